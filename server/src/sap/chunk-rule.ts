import { InkanError } from "../errors.js";

/**
 * R-3.2.1.4 (issue 18): every chunk of a DTBS/R upload but the last, chunk 0 (BeginTransaction)
 * included, holds exactly max_hashes_per_chunk hashes, so chunk k starts at k * chunkSize and a
 * resumed upload is unambiguous. A short chunk that is not the last is refused at once: accepted,
 * it would leave an upload whose later chunks start where no client expects (for chunk 0, one
 * that a client following the rule can never complete). Its own module so that the conformance
 * suite's broken SAM can switch exactly this rule off.
 */
export function checkChunkLength(chunk: { hashes: number; last: boolean }, chunkSize: number): void {
  if (!chunk.last && chunk.hashes !== chunkSize) {
    throw new InkanError("INVALID_REQUEST", `every chunk but the last must hold exactly ${chunkSize} hashes (max_hashes_per_chunk)`, { field: "hashes" });
  }
}
