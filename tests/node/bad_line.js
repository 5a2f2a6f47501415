// A cluster worker that breaks the protocol: once its server listens, worker BAD_ID (default 1)
// writes a line that is not JSON straight onto the IPC channel (fd 3, the fd Node's
// NODE_CHANNEL_FD names; `process.send` could only ever write JSON). A primary must kill that
// worker and carry on. The others answer their worker id like worker_id.js.
// PORT (default 0), HOST (default 127.0.0.1).
const cluster = require('cluster');
const fs = require('fs');
const http = require('http');

const port = Number(process.env.PORT || 0);
const host = process.env.HOST || '127.0.0.1';
const badId = Number(process.env.BAD_ID || 1);

http.createServer((req, res) => {
    res.end(String(cluster.worker.id));
}).listen(port, host, () => {
    if (cluster.worker.id === badId) {
        // After this turn, once Node's own `listening` message has gone out.
        setImmediate(() => fs.writeSync(3, 'not json\n'));
    }
});
