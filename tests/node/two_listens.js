// A cluster worker with two servers, each `listen(0)`: Node keys a worker's listens on the
// same address by their index, so these are two shared listeners on two ports. Each answers
// `<server> <worker id>`, the server `a` or `b`. HOST (default 127.0.0.1).
const cluster = require('cluster');
const http = require('http');

const host = process.env.HOST || '127.0.0.1';

for (const name of ['a', 'b']) {
    http.createServer((req, res) => {
        res.end(`${name} ${cluster.worker.id}`);
    }).listen(0, host);
}
