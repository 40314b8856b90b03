/**
 * A lock held across the SAM nodes that share a store (issue 21): it makes a read-modify-write of
 * an object the nodes share in the crypto module (the SAM encryption key set, the key-import
 * transport key set) happen on one node at a time. One node (SQLite) needs none: each class
 * already serializes its own updates in the process.
 */
export type CrossNodeLock = <T>(name: string, fn: () => Promise<T>) => Promise<T>;
