// bench_ioredis.js - bench_redis's workload through ioredis with automatic
// pipelining, the client a Node.js user would reach for: GET of keys
// bench:k:<i>, i from the same pseudo-random sequence over the same key
// space, each reply checked (the 3-byte value "xxx"). Two figures:
//
//   ioredis_autopipe_1conn  one client: ioredis multiplexes every command
//                           on its one connection, pipelined per tick
//   ioredis_autopipe_4conn  4 clients, op i on client i % 4 (bench_redis's
//                           pool of 4; BENCH_NODE_REDIS_CLIENTS)
//
//     node bench/node/bench_ioredis.js     (bench/node/run.sh installs ioredis first)
//
// Environment: DBPOOL_TEST_REDIS_URL (required, redis://[user]:pass@127.0.0.1:port/db;
// scripts/with-servers.sh sets it), BENCH_REDIS_N (GETs, 200000; 30000 with
// BENCH_QUICK=1), BENCH_REDIS_KEYS (10000, as bench_redis),
// BENCH_NODE_REDIS_INFLIGHT (2000), BENCH_NODE_REDIS_CLIENTS (4),
// BENCH_MAX_SECONDS (per measured phase, 120).
//
// Setup as bench_redis's: every key bench:k:0 .. bench:k:<KEYS-1> (and
// redis-benchmark's key:__rand_int__) is SET to "xxx", pipelined, before
// anything is timed; each side is warmed up with bench_redis's warm-up count.
// A lost connection is not retried (retryStrategy off, no offline queue): it
// fails the run. Exit 1 on any failed or wrong reply.
'use strict';

const common = require('./common.js');

const PROG = 'bench_ioredis';
const VALUE = 'xxx';

let Redis;
try {
    Redis = require('ioredis');
} catch (e) {
    common.die(PROG, 'ioredis is not installed: run bench/node/run.sh (it runs npm ci in bench/node)');
}
const IOREDIS_VERSION = require('ioredis/package.json').version;

async function openClient(u) {
    const db = u.path === '' ? 0 : Number(u.path);
    if (!Number.isInteger(db) || db < 0) common.die(PROG, 'DBPOOL_TEST_REDIS_URL: the path is not a database number');
    const c = new Redis({
        host: u.host,
        port: u.port || 6379,
        username: u.user || undefined,
        password: u.password || undefined,
        db,
        enableAutoPipelining: true,
        lazyConnect: true,
        connectTimeout: 10000,
        retryStrategy: () => null,
        maxRetriesPerRequest: 0,
        enableOfflineQueue: false,
    });
    // Each command reports its own failure; the connection's error is kept
    // for the message when connecting fails ("Connection is closed" says little).
    let lastError = null;
    c.on('error', (e) => { lastError = e; });
    try {
        await c.connect();
    } catch (e) {
        common.die(PROG, `connecting to 127.0.0.1:${u.port || 6379}: ${(lastError || e).message}`);
    }
    return c;
}

// bench_redis's ensure_keys: SET every key to "xxx", 1000 per pipeline.
async function ensureKeys(c, nkeys) {
    for (let base = 0; base <= nkeys; base += 1000) {
        const p = c.pipeline();
        for (let i = base; i < base + 1000 && i <= nkeys; i++) p.set(i === nkeys ? 'key:__rand_int__' : `bench:k:${i}`, VALUE);
        const res = await p.exec();
        for (const [err] of res) if (err) common.die(PROG, `setup SET failed: ${err.message}`);
    }
}

async function main() {
    const u = common.loopbackUrl(PROG, 'DBPOOL_TEST_REDIS_URL', 'run under scripts/with-servers.sh');
    const n = common.envCount('BENCH_REDIS_N', 200000, 30000);
    const nkeys = common.envLong('BENCH_REDIS_KEYS', 10000);
    const inflight = common.envLong('BENCH_NODE_REDIS_INFLIGHT', 2000);
    const nclients = common.envLong('BENCH_NODE_REDIS_CLIENTS', 4);
    const maxS = common.maxSeconds();
    const warm = common.warmCount(n, 1000, 20000);
    const keys = Array.from(common.drawIndexes(n, nkeys), (k) => `bench:k:${k}`);
    let failed = 0;

    for (const count of nclients === 1 ? [1] : [1, nclients]) {
        const clients = [];
        for (let j = 0; j < count; j++) clients.push(await openClient(u));
        if (count === 1) {
            await ensureKeys(clients[0], nkeys);
            process.stderr.write(`${PROG}: ${n} GETs over ${nkeys} keys of 3 bytes\n`);
        }
        const submit = (i, done) => {
            clients[i % count].get(keys[i]).then(
                (v) => done(v === VALUE ? null : new Error(`GET ${keys[i]}: ${JSON.stringify(v)}, not "${VALUE}"`)),
                done);
        };
        const w = await common.runWindow(PROG, `${count}conn warm-up`, warm, inflight, maxS, submit);
        if (w.errors) common.die(PROG, 'the warm-up GETs failed');
        const r = await common.runWindow(PROG, `${count}conn`, n, inflight, maxS, submit);
        common.printRate(`ioredis_autopipe_${count}conn`, r, 'GET/s',
            `ioredis ${IOREDIS_VERSION} enableAutoPipelining, ${inflight} in flight, ` +
            `${count === 1 ? '1 connection' : `${count} clients round-robin`}, node ${process.version}`);
        failed += r.errors;
        await Promise.all(clients.map((c) => c.quit().catch(() => c.disconnect())));
    }
    if (failed) common.die(PROG, `${failed} GETs failed or returned a wrong value`);
}

main().catch((e) => common.die(PROG, e && e.message ? e.message : String(e)));
