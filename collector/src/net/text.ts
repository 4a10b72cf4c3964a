// Putting text a client sent into an answer: bounded, and cut only between characters.

/** RFC 6455 5.5: a control frame carries at most 125 bytes, 2 of them the close code. */
export const MAX_CLOSE_REASON_BYTES = 123;

/** The longest prefix of text whose UTF-8 encoding fits maxBytes; never splits a character or a surrogate pair. */
export function utf8Prefix(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text) <= maxBytes) return text;
  let bytes = 0;
  let end = 0;
  for (const ch of text) {
    bytes += Buffer.byteLength(ch);
    if (bytes > maxBytes) break;
    end += ch.length;
  }
  return text.slice(0, end);
}

/** A WebSocket close reason from any text: ws throws (and an unhandled throw ends the process) past 123 bytes. */
export function closeReason(text: string): string {
  return utf8Prefix(text, MAX_CLOSE_REASON_BYTES);
}

/** A client's string quoted in an error: at most max characters, marked when cut. */
export function clip(text: string, max = 64): string {
  const chars = [...text.slice(0, 2 * max + 2)];
  return chars.length > max ? `${chars.slice(0, max).join('')}...(${text.length} chars)` : text;
}

/** A client's value quoted in an error: JSON, clipped. */
export function quote(value: unknown, max = 64): string {
  let s: string;
  try {
    s = JSON.stringify(value) ?? String(value);
  } catch {
    s = String(value);
  }
  return clip(s, max);
}
