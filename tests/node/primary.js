// Node's own cluster primary for any of these worker programs: what herd replaces, kept to
// compare herd with (scripts/compare-peers.sh) and to check a fixture under real Node.
//   node primary.js WORKER.js [args]      WORKERS (default 2) workers;
//   NODE_CLUSTER_SCHED_POLICY=none|rr     Node's own switch (default rr).
// Prints one line per event: `fork N`, `online N`, `listening N ADDR:PORT`, `message N <json>`,
// `exit N code C signal S`. SIGTERM or SIGINT disconnects every worker and exits when all have.
const cluster = require('cluster');
const path = require('path');

const [script, ...args] = process.argv.slice(2);
if (!script) {
    console.error('usage: node primary.js WORKER.js [args]');
    process.exit(2);
}
cluster.setupPrimary({ exec: path.resolve(script), args });

cluster.on('fork', (w) => console.log(`fork ${w.id}`));
cluster.on('online', (w) => console.log(`online ${w.id}`));
cluster.on('listening', (w, a) => console.log(`listening ${w.id} ${a.address}:${a.port}`));
cluster.on('message', (w, m) => console.log(`message ${w.id} ${JSON.stringify(m)}`));
cluster.on('exit', (w, code, signal) => console.log(`exit ${w.id} code ${code} signal ${signal}`));

const workers = Number(process.env.WORKERS || 2);
for (let i = 0; i < workers; i++) {
    cluster.fork();
}

// cluster.disconnect's callback runs as soon as the workers are told, not when they are gone:
// count the exits instead, so every `exit` line is printed before this process ends.
let alive = workers;
cluster.on('exit', () => {
    alive -= 1;
    if (alive === 0 && stopping) process.exit(0);
});
let stopping = false;
for (const sig of ['SIGTERM', 'SIGINT']) {
    process.on(sig, () => {
        stopping = true;
        cluster.disconnect();
    });
}
