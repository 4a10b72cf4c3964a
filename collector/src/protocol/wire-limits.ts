// Limits of the agent-collector wire that the command lines show as defaults: no imports, so a CLI's --help
// loads nothing for them (records.ts, with TypeBox, re-exports them for everything else).

/** Largest batch message a collector takes unless told otherwise (its welcome says what it takes). */
export const DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024;
