// A cluster worker that answers every request with its `cluster.worker.id`: the round-robin
// tests count which worker served each connection. No per-request log.
// PORT (default 0: any free port, shared by every worker) and HOST (default 127.0.0.1; empty:
// listen without a host, which Node sends to the primary as `address: null`).
const cluster = require('cluster');
const http = require('http');

const port = Number(process.env.PORT || 0);
const host = process.env.HOST === undefined ? '127.0.0.1' : process.env.HOST;

const server = http.createServer((req, res) => {
    res.end(String(cluster.worker.id));
});
if (host === '') {
    server.listen(port);
} else {
    server.listen(port, host);
}
