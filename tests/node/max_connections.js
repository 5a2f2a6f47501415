// A cluster worker whose server takes one connection at a time (`maxConnections = 1`) and
// holds each request DELAY_MS (default 300) before answering its worker id. A second
// connection handed to a busy worker is refused with `{accepted: false}`, and the primary must
// give it to another worker. PORT (default 0), HOST (default 127.0.0.1).
const cluster = require('cluster');
const http = require('http');

const port = Number(process.env.PORT || 0);
const host = process.env.HOST || '127.0.0.1';
const delay = Number(process.env.DELAY_MS || 300);

const server = http.createServer((req, res) => {
    setTimeout(() => {
        // Close the connection with the response, so the slot frees when the client has it.
        res.writeHead(200, { Connection: 'close' });
        res.end(String(cluster.worker.id));
    }, delay);
});
server.maxConnections = 1;
server.listen(port, host);
