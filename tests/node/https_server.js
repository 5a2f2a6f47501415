// A cluster worker serving TLS itself (`https.createServer`): the primary only passes
// connections; the worker's server sends its session ticket keys in the `data` of its
// queryServer and takes the primary's echo of them. Answers its worker id.
// TLS_KEY and TLS_CERT: paths of a PEM key and certificate. PORT (default 0), HOST
// (default 127.0.0.1).
const cluster = require('cluster');
const fs = require('fs');
const https = require('https');

const port = Number(process.env.PORT || 0);
const host = process.env.HOST || '127.0.0.1';

const options = {
    key: fs.readFileSync(process.env.TLS_KEY),
    cert: fs.readFileSync(process.env.TLS_CERT),
};
https.createServer(options, (req, res) => {
    res.end(String(cluster.worker.id));
}).listen(port, host);
