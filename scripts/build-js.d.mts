/** Builds the bundle into outdir (default dist/); resolves with the entry's path. */
export function buildBundle(outdir?: string): Promise<string>;
