// A cluster worker that breaks the protocol: once its server listens, worker BAD_ID (default 1)
// sends an internal cluster message with an `act` no primary knows. `process.send` writes any
// object as JSON, and a `cmd` starting `NODE_` makes the line internal on the other side.
// A primary must kill that worker and carry on. The others answer their worker id.
// PORT (default 0), HOST (default 127.0.0.1).
const cluster = require('cluster');
const http = require('http');

const port = Number(process.env.PORT || 0);
const host = process.env.HOST || '127.0.0.1';
const badId = Number(process.env.BAD_ID || 1);

http.createServer((req, res) => {
    res.end(String(cluster.worker.id));
}).listen(port, host, () => {
    if (cluster.worker.id === badId) {
        setImmediate(() => process.send({ cmd: 'NODE_CLUSTER', act: 'bogus', seq: 1000 }));
    }
});
