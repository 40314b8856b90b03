import { connect as tlsConnect, type TLSSocket } from "node:tls";
import type { Pem } from "../pki/dev-pki.js";

/**
 * A raw HTTP/2 client over TLS for abuse tests: it writes frames itself, so it can do what no
 * well-behaved client does (ignore SETTINGS_MAX_CONCURRENT_STREAMS, open streams and never send
 * their body, reset streams as fast as it opens them). It answers the server's SETTINGS and PINGs
 * and counts what the server sends back; it keeps nothing else, so its own memory stays small.
 */
export interface RawH2Connection {
  socket: TLSSocket;
  /** Opens a stream: HEADERS for a POST to `path`; with `body`, one DATA frame ends the stream. */
  open(path: string, headers: Record<string, string>, body?: Uint8Array): number;
  /** RST_STREAM (CANCEL) for `streamId`. */
  reset(streamId: number): void;
  /** What the server sent so far. */
  seen: { headers: number; rstStream: number; goaway: number; data: number; settings: number };
  /** Resolves once the server closed the connection (or it failed). */
  closed: Promise<void>;
  isClosed(): boolean;
  close(): void;
}

const preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
const frameType = { data: 0, headers: 1, rstStream: 3, settings: 4, ping: 6, goaway: 7, windowUpdate: 8 } as const;

function frame(type: number, flags: number, streamId: number, payload: Uint8Array = new Uint8Array(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

/** HPACK integer with an N-bit prefix (RFC 7541 §5.1). */
function hpackInt(value: number, prefixBits: number, firstByteFlags: number): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [firstByteFlags | value];
  const out = [firstByteFlags | max];
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest % 128) + 128);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return out;
}

/** A header block of literal fields without indexing, no Huffman: simple and stateless. */
export function hpackBlock(headers: [string, string][]): Buffer {
  const bytes: number[] = [];
  for (const [name, value] of headers) {
    bytes.push(0x00);
    const n = Buffer.from(name, "latin1");
    const v = Buffer.from(value, "latin1");
    bytes.push(...hpackInt(n.length, 7, 0), ...n, ...hpackInt(v.length, 7, 0), ...v);
  }
  return Buffer.from(bytes);
}

/** Connects to `url` (https://host:port) over TLS with ALPN h2, presenting `who`'s certificate. */
export async function rawH2Connect(url: string, tls: { ca: string } & Partial<Pem>): Promise<RawH2Connection> {
  const { hostname, port } = new URL(url);
  const authority = `${hostname}:${port}`;
  const socket = tlsConnect({ host: hostname, port: Number(port), ca: tls.ca, cert: tls.cert, key: tls.key, ALPNProtocols: ["h2"], servername: "localhost" });
  await new Promise<void>((resolve, reject) => {
    socket.once("secureConnect", resolve);
    socket.once("error", reject);
  });
  socket.on("error", () => undefined); // the server may reset the connection: that is what the tests provoke
  const seen = { headers: 0, rstStream: 0, goaway: 0, data: 0, settings: 0 };
  let pending: Buffer = Buffer.alloc(0);
  socket.on("data", (chunk: Buffer) => {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    while (pending.length >= 9) {
      const length = pending.readUIntBE(0, 3);
      if (pending.length < 9 + length) break;
      const type = pending[3];
      const flags = pending[4]!;
      const payload = pending.subarray(9, 9 + length);
      if (type === frameType.settings && !(flags & 1)) {
        seen.settings++;
        socket.write(frame(frameType.settings, 1, 0));
      } else if (type === frameType.ping && !(flags & 1)) {
        socket.write(frame(frameType.ping, 1, 0, payload));
      } else if (type === frameType.headers) seen.headers++;
      else if (type === frameType.rstStream) seen.rstStream++;
      else if (type === frameType.goaway) seen.goaway++;
      else if (type === frameType.data) seen.data++;
      pending = pending.subarray(9 + length);
    }
  });
  let isClosed = false;
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  void closed.then(() => (isClosed = true));
  socket.write(Buffer.concat([preface, frame(frameType.settings, 0, 0)]));
  let nextId = 1;
  return {
    socket,
    seen,
    closed,
    isClosed: () => isClosed,
    open(path, headers, body) {
      const id = nextId;
      nextId += 2;
      const block = hpackBlock([
        [":method", "POST"],
        [":scheme", "https"],
        [":authority", authority],
        [":path", path],
        ...Object.entries(headers),
      ]);
      const endHeaders = 0x4;
      const endStream = 0x1;
      socket.write(frame(frameType.headers, endHeaders, id, block));
      if (body) socket.write(frame(frameType.data, endStream, id, body));
      return id;
    },
    reset(streamId) {
      const code = Buffer.alloc(4);
      code.writeUInt32BE(0x8); // CANCEL
      socket.write(frame(frameType.rstStream, 0, streamId, code));
    },
    close() {
      socket.destroy();
    },
  };
}
