// Node.js cluster "hello world": the peer that herd reproduces.
//
// This is the design document's program, kept in its shape: the master forks
// N workers and each worker serves HTTP/1.1 on the same port. With the
// round-robin policy (Node's default on Linux, set explicitly below) the master
// accepts every connection and passes the handle to a worker over IPC, which is
// exactly herd's architecture.
//
// Differences from the original:
//   * The per-request console.log is removed: logging each request would
//     measure the terminal (a synchronous write per request), not the server.
//   * The port and worker count come from the environment/argv so the
//     benchmark script can pick a free port.
//   * SIGTERM on the master stops the workers and exits, so the benchmark
//     leaves no process behind.
//
// Usage: PORT=8080 node node-cluster.js [WORKERS]
//   WORKERS: argv[2], else $WORKERS, else 2.  HOST: $HOST, else 127.0.0.1.
'use strict';

const cluster = require('cluster');
const http = require('http');

const PORT = Number(process.env.PORT);
const HOST = process.env.HOST || '127.0.0.1';
const WORKERS = Number(process.argv[2] || process.env.WORKERS || 2);

if (!Number.isInteger(PORT) || PORT <= 0 || PORT > 65535) {
  console.error(`node-cluster: PORT must be set to a TCP port, got ${JSON.stringify(process.env.PORT)}`);
  process.exit(2);
}
if (!Number.isInteger(WORKERS) || WORKERS < 1) {
  console.error(`node-cluster: WORKERS must be a positive integer, got ${WORKERS}`);
  process.exit(2);
}

// Must be set before the first fork. NODE_CLUSTER_SCHED_POLICY would override
// the default; pin it so the comparison is always master-accepts round-robin.
cluster.schedulingPolicy = cluster.SCHED_RR;

// cluster.isMaster is the design document's spelling (an alias of isPrimary).
if (cluster.isMaster) {
  let stopping = false;
  for (let i = 0; i < WORKERS; i++) cluster.fork();

  cluster.on('exit', (worker, code, signal) => {
    if (stopping) {
      if (Object.keys(cluster.workers).length === 0) process.exit(0);
      return;
    }
    // A worker died under load: that is a failed benchmark, not something to hide.
    console.error(`node-cluster: worker ${worker.process.pid} exited (code ${code}, signal ${signal})`);
    process.exitCode = 1;
  });

  const stop = () => {
    if (stopping) return;
    stopping = true;
    const workers = Object.values(cluster.workers);
    if (workers.length === 0) process.exit(0);
    for (const w of workers) w.process.kill('SIGTERM');
    // Don't hang on a stuck worker; the script's SIGKILL fallback covers the rest.
    setTimeout(() => process.exit(0), 3000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);

  console.error(`node-cluster: master ${process.pid} forking ${WORKERS} workers for ${HOST}:${PORT}`);
} else {
  http.createServer((req, res) => {
    res.writeHead(200);
    res.end('hello world');
  }).listen(PORT, HOST);
}
