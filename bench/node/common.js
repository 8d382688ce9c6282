// common.js - what the Node.js peers share, mirroring bench/bench_common.h:
// environment knobs, the ids' pseudo-random sequence, the loopback-only URL
// check, the window of ops in flight, and the output line bench/run.sh greps:
//
//   [node] name = 12345 q/s  (30000 in 2.43 s; free text)
//
// A line is printed only for a figure; everything else goes to stderr.
'use strict';

const { performance } = require('node:perf_hooks');

function die(prog, msg) {
    process.stderr.write(`${prog}: ${msg}\n`);
    process.exit(1);
}

// A positive integer from the environment, or def when unset or unusable
// (bench_env_long).
function envLong(name, def) {
    const s = process.env[name];
    if (s === undefined || s === '') return def;
    const v = Number(s);
    if (!Number.isSafeInteger(v) || v <= 0 || !/^[0-9]+$/.test(s)) {
        process.stderr.write(`bench: ignoring ${name}=${s} (not a positive integer)\n`);
        return def;
    }
    return v;
}

// `name` if set, else `quick` under BENCH_QUICK=1, else `full` (bench_count).
function envCount(name, full, quick) {
    const q = process.env.BENCH_QUICK;
    return envLong(name, q && q !== '0' ? quick : full);
}

function maxSeconds() {
    return envLong('BENCH_MAX_SECONDS', 120);
}

// bench_rand: the xorshift64* sequence every side draws its ids or keys from,
// seeded with 0x5eed5eed; each draw gives (x >> 11) % size, as in C.
function drawIndexes(n, size) {
    const mask = (1n << 64n) - 1n;
    const mul = 2685821657736338717n;
    const bsize = BigInt(size);
    const out = new Float64Array(n);
    let x = 0x5eed5eedn;
    for (let i = 0; i < n; i++) {
        x ^= x >> 12n;
        x ^= (x << 25n) & mask;
        x ^= x >> 27n;
        out[i] = Number((((x * mul) & mask) >> 11n) % bsize);
    }
    return out;
}

// The warm-up count of the C benchmarks: n / 20 within [lo, hi], n if smaller.
function warmCount(n, lo, hi) {
    if (n < lo) return n;
    return Math.min(Math.max(Math.floor(n / 20), lo), hi);
}

// new URL() of the variable, refused unless it names the loopback address:
// these loads must never leave the machine.
function loopbackUrl(prog, varName, hint) {
    const s = process.env[varName];
    if (!s) die(prog, `${varName} is not set (${hint})`);
    let u;
    try {
        u = new URL(s);
    } catch (e) {
        die(prog, `${varName} is not a URL`);   // no value in the message: it holds a password
    }
    const host = u.hostname === 'localhost' ? '127.0.0.1' : u.hostname;
    if (host !== '127.0.0.1') die(prog, `${varName} must point at 127.0.0.1 (it names ${u.hostname})`);
    return {
        host,
        port: u.port ? Number(u.port) : undefined,
        user: decodeURIComponent(u.username),
        password: decodeURIComponent(u.password),
        path: decodeURIComponent(u.pathname.replace(/^\//, '')),
    };
}

// Keeps `inflight` ops going until n have been submitted or maxS seconds have
// passed (then it stops submitting and waits for those in flight).
// submit(i, done) starts op i and calls done(err) once it settled; err is a
// failed or wrong reply, counted and its first three reported. Resolves to
// { done, errors, secs, capped }; a phase still unsettled 60 s past maxS is
// fatal, so nothing here waits forever.
function runWindow(prog, what, n, inflight, maxS, submit) {
    return new Promise((resolve) => {
        const start = performance.now();
        const limit = start + maxS * 1000;
        let next = 0, settled = 0, running = 0, errors = 0, capped = false;
        const watchdog = setTimeout(
            () => die(prog, `${what}: ops still unsettled ${maxS + 60} s after the start`),
            Math.min((maxS + 60) * 1000, 2 ** 31 - 1));   // setTimeout's largest delay
        const finish = () => {
            clearTimeout(watchdog);
            resolve({ done: settled, errors, secs: (performance.now() - start) / 1000, capped });
        };
        const pump = () => {
            while (running < inflight && next < n) {
                if ((next & 63) === 0 && performance.now() > limit) {
                    capped = true;
                    n = next;
                    break;
                }
                running++;
                submit(next++, onDone);
            }
            if (running === 0) finish();
        };
        function onDone(err) {
            running--;
            settled++;
            if (err) {
                if (++errors <= 3) process.stderr.write(`${prog}: ${what}: ${err.message || err}\n`);
            }
            pump();
        }
        if (n <= 0) finish();
        else pump();
    });
}

// bench_print_rate's line, group "node".
function printRate(name, r, unit, extra) {
    const rate = r.secs > 0 ? r.done / r.secs : 0;
    const capped = r.capped ? '; STOPPED AT BENCH_MAX_SECONDS' : '';
    process.stdout.write(`[node] ${name} = ${rate.toFixed(0)} ${unit}  (${r.done} in ${r.secs.toFixed(2)} s${capped}; ${extra})\n`);
}

module.exports = { die, envLong, envCount, maxSeconds, drawIndexes, warmCount, loopbackUrl, runWindow, printRate };
