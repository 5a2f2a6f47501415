// A cluster worker that answers its worker id, and on `/block/<ms>` first busy-waits that
// long: its event loop (and so its channel) is stuck, as a worker in a long computation is.
// Connections handed to it meanwhile wait unaccepted; a test kills it and checks that they
// are served by another worker. PORT (default 0), HOST (default 127.0.0.1).
const cluster = require('cluster');
const http = require('http');

const port = Number(process.env.PORT || 0);
const host = process.env.HOST || '127.0.0.1';

http.createServer((req, res) => {
    const m = /^\/block\/(\d+)$/.exec(req.url);
    if (m) {
        const until = Date.now() + Number(m[1]);
        while (Date.now() < until) {}
    }
    res.end(String(cluster.worker.id));
}).listen(port, host);
