#!/usr/bin/env node
// Polls the AeroDB control plane with an observer certificate and prints the lag of each replica
// as seen by each primary.
//
//   node poll_lag.js --profile certs/dev/observer.profile.toml --count 5 --interval 1
//   node poll_lag.js --endpoint 127.0.0.1:7700 --ca ca.pem --cert observer.pem --client-key observer.key
//   node poll_lag.js --profile certs/dev/observer.profile.toml --check-denied
//
// Read-only: it calls the Observer service only, except --check-denied, which sends one empty
// Actor.RequestAction to show that an observer certificate is refused (PERMISSION_DENIED) and
// prints the google.rpc.ErrorInfo from the grpc-status-details-bin trailer. Nothing is retried:
// retries are disabled on the channel and a failed call ends the program. See docs/automation.md.
'use strict';

const fs = require('fs');
const net = require('net');
const path = require('path');
const tls = require('tls');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_ROOT = path.resolve(__dirname, '..', '..', 'proto');
const PROTOS = ['aerodb/kernel/v1/kernel.proto', 'aerodb/control/v1/control.proto'];

// No retries (configured or transparent), no service config from name resolution.
const CHANNEL_OPTIONS = {
  'grpc.enable_retries': 0,
  'grpc.service_config_disable_resolution': 1,
  'grpc.max_receive_message_length': 16 << 20,
};
const DEADLINE_MS = 10000;

function usage(msg) {
  if (msg) console.error(`poll_lag.js: ${msg}`);
  console.error('usage: node poll_lag.js (--profile FILE | --endpoint HOST:PORT --ca FILE --cert FILE --client-key FILE)\n' +
    '                      [--tls-server-name NAME] [--count N] [--interval SECONDS] [--json] [--check-denied]');
  process.exit(2);
}

function parseArgs(argv) {
  const a = { count: 1, interval: 1, json: false, checkDenied: false };
  const value = (i) => (i + 1 < argv.length ? argv[i + 1] : usage(`${argv[i]} needs a value`));
  for (let i = 0; i < argv.length; i++) {
    switch (argv[i]) {
      case '--profile': a.profile = value(i++); break;
      case '--endpoint': a.endpoint = value(i++); break;
      case '--ca': a.ca = value(i++); break;
      case '--cert': a.cert = value(i++); break;
      case '--client-key': case '--key': a.key = value(i++); break; // --key: the old spelling
      case '--tls-server-name': a.tlsServerName = value(i++); break;
      case '--count': a.count = Number(value(i++)); break;
      case '--interval': a.interval = Number(value(i++)); break;
      case '--json': a.json = true; break;
      case '--check-denied': a.checkDenied = true; break;
      case '-h': case '--help': usage(); break;
      default: usage(`unknown argument ${argv[i]}`);
    }
  }
  if (!Number.isInteger(a.count) || a.count < 1) usage('--count must be a positive integer');
  if (!(a.interval >= 0)) usage('--interval must be a number of seconds');
  return a;
}

// An aerodbctl profile (written by `aerodb certs` / `aerodb dev`): `key = "value"` lines only.
// Relative paths (ca, cert, key) are taken relative to the profile's own folder, as aerodbctl
// does.
function readProfile(file) {
  const out = {};
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const m = line.match(/^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(#.*)?$/);
    if (m) out[m[1]] = m[2].replace(/\\(["\\])/g, '$1');
  }
  for (const k of ['ca', 'cert', 'key']) {
    if (out[k]) out[k] = path.resolve(path.dirname(file), out[k]);
  }
  return out;
}

function settings(a) {
  const s = a.profile ? readProfile(a.profile) : {};
  for (const k of ['endpoint', 'ca', 'cert', 'key']) {
    if (a[k]) s[k] = a[k];
    if (!s[k]) usage(`no ${k} (give --profile or --${k === 'key' ? 'client-key' : k})`);
  }
  if (a.tlsServerName) s.tls_server_name = a.tlsServerName;
  return s;
}

function load() {
  const def = protoLoader.loadSync(PROTOS, {
    includeDirs: [PROTO_ROOT],
    keepCase: true,
    longs: String, // uint64 positions as decimal strings
    enums: String, // enum values by name, e.g. "ROLE_PRIMARY"
    defaults: true,
    oneofs: true, // e.g. node.state === 'facts' | 'unreachable'
  });
  return grpc.loadPackageDefinition(def).aerodb.control.v1;
}

// The host part of HOST:PORT or [IPv6]:PORT.
function endpointHost(endpoint) {
  const m = endpoint.match(/^\[([^\]]+)\](?::\d+)?$/) || endpoint.match(/^([^:]+)(?::\d+)?$/);
  return m ? m[1] : endpoint;
}

// TLS options for an endpoint. RFC 6066 forbids an IP address as the TLS server name (SNI), and
// Node warns (DEP0123) when grpc-js passes one. For an IP endpoint the SNI is therefore a DNS
// name (--tls-server-name, default `localhost`, which the dev server certificates carry), while
// the certificate is still verified against the IP address actually dialled (its IP SAN): the
// name sent changes nothing about what is accepted.
function tlsOptions(endpoint, serverName) {
  const host = endpointHost(endpoint);
  if (!net.isIP(host)) return { verify: {}, options: {} };
  return {
    verify: { checkServerIdentity: (_sni, cert) => tls.checkServerIdentity(host, cert) },
    options: { 'grpc.ssl_target_name_override': serverName || 'localhost' },
  };
}

function connect(pb, s) {
  const t = tlsOptions(s.endpoint, s.tls_server_name);
  const creds = grpc.credentials.createSsl(
    fs.readFileSync(s.ca), fs.readFileSync(s.key), fs.readFileSync(s.cert), t.verify);
  const options = { ...CHANNEL_OPTIONS, ...t.options };
  return {
    observer: new pb.Observer(s.endpoint, creds, options),
    actor: new pb.Actor(s.endpoint, creds, options),
  };
}

// One unary call, one attempt, with a deadline.
function call(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: Date.now() + DEADLINE_MS }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

// (replica, seen by, lag_entries): each primary's view of its peers, as the kernel reported it.
function replicaLag(status) {
  const out = [];
  for (const node of status.nodes) {
    if (node.state !== 'facts') continue;
    if (node.facts.authority.role !== 'ROLE_PRIMARY') continue;
    for (const peer of node.facts.replication.peers) {
      out.push({ replica: peer.node_id, seen_by: node.node_id, lag_entries: Number(peer.lag_entries) });
    }
  }
  return out;
}

// --- google.rpc.Status from grpc-status-details-bin, decoded by hand (protobuf wire format) -----
// Status { int32 code = 1; string message = 2; repeated google.protobuf.Any details = 3; }
// Any { string type_url = 1; bytes value = 2; }
// ErrorInfo { string reason = 1; string domain = 2; map<string, string> metadata = 3; }
// BadRequest { repeated FieldViolation field_violations = 1; }  FieldViolation { field = 1; description = 2; }

function* fields(buf) {
  let i = 0;
  const varint = () => {
    let v = 0, mul = 1, b;
    do {
      if (i >= buf.length) throw new Error('truncated varint');
      b = buf[i++];
      v += (b & 0x7f) * mul;
      mul *= 128;
    } while (b & 0x80);
    return v;
  };
  while (i < buf.length) {
    const tag = varint();
    const no = Math.floor(tag / 8), wt = tag & 7;
    if (wt === 0) yield [no, varint()];
    else if (wt === 2) { const n = varint(); if (i + n > buf.length) throw new Error('truncated field'); yield [no, buf.subarray(i, i + n)]; i += n; }
    else if (wt === 1) i += 8;
    else if (wt === 5) i += 4;
    else throw new Error(`unsupported wire type ${wt}`);
  }
}

function decodeStatus(buf) {
  const status = { code: 0, message: '', details: [] };
  for (const [no, v] of fields(buf)) {
    if (no === 1) status.code = v;
    else if (no === 2) status.message = v.toString('utf8');
    else if (no === 3) {
      const any = { type_url: '', value: Buffer.alloc(0) };
      for (const [n, w] of fields(v)) {
        if (n === 1) any.type_url = w.toString('utf8');
        else if (n === 2) any.value = w;
      }
      status.details.push(any);
    }
  }
  return status;
}

function decodeErrorInfo(buf) {
  const info = { reason: '', domain: '', metadata: {} };
  for (const [no, v] of fields(buf)) {
    if (no === 1) info.reason = v.toString('utf8');
    else if (no === 2) info.domain = v.toString('utf8');
    else if (no === 3) {
      let key = '', value = '';
      for (const [n, w] of fields(v)) {
        if (n === 1) key = w.toString('utf8');
        else if (n === 2) value = w.toString('utf8');
      }
      info.metadata[key] = value;
    }
  }
  return info;
}

function decodeBadRequest(buf) {
  const violations = [];
  for (const [no, v] of fields(buf)) {
    if (no !== 1) continue;
    const fv = { field: '', description: '' };
    for (const [n, w] of fields(v)) {
      if (n === 1) fv.field = w.toString('utf8');
      else if (n === 2) fv.description = w.toString('utf8');
    }
    violations.push(fv);
  }
  return violations;
}

// The details of a failed call: { code, message, errorInfo, badRequest } or null.
function statusDetails(err) {
  const raw = err.metadata && err.metadata.get('grpc-status-details-bin')[0];
  if (!raw) return null;
  const status = decodeStatus(Buffer.from(raw));
  const out = { code: status.code, message: status.message, errorInfo: null, badRequest: null };
  for (const d of status.details) {
    if (d.type_url.endsWith('/google.rpc.ErrorInfo')) out.errorInfo = decodeErrorInfo(d.value);
    else if (d.type_url.endsWith('/google.rpc.BadRequest')) out.badRequest = decodeBadRequest(d.value);
  }
  return out;
}

function describeError(err) {
  const lines = [`${grpc.status[err.code] || err.code}: ${err.details}`];
  const d = statusDetails(err);
  if (d && d.errorInfo) {
    lines.push(`  reason:    ${d.errorInfo.reason}`, `  domain:    ${d.errorInfo.domain}`);
    for (const k of Object.keys(d.errorInfo.metadata).sort()) lines.push(`  metadata.${k}: ${d.errorInfo.metadata[k]}`);
  }
  if (d && d.badRequest) for (const v of d.badRequest) lines.push(`  field ${v.field}: ${v.description}`);
  return lines.join('\n');
}

// Sends one empty Actor.RequestAction. With an observer certificate the authorization layer
// refuses it before any service code runs. The request is empty on purpose: even under an actor
// certificate it names no command or target, so it can never mint a pending action.
async function checkDenied(clients) {
  try {
    await call(clients.actor, 'RequestAction', {});
  } catch (err) {
    console.log(describeError(err));
    const d = statusDetails(err);
    const ok = err.code === grpc.status.PERMISSION_DENIED && d && d.errorInfo &&
      d.errorInfo.reason === 'PHASE7_INSUFFICIENT_AUTHORITY';
    if (!ok) console.error('unexpected: wanted PERMISSION_DENIED with reason PHASE7_INSUFFICIENT_AUTHORITY');
    return ok ? 0 : 1;
  }
  console.error('unexpected: RequestAction was accepted (is this an observer certificate?)');
  return 1;
}

async function poll(clients, a) {
  for (let i = 0; i < a.count; i++) {
    const state = await call(clients.observer, 'GetClusterState', {});
    const status = await call(clients.observer, 'GetReplicationStatus', {});
    // A node the control plane could not observe is an explicit entry, never omitted.
    const unreachable = state.nodes.filter((n) => n.state === 'unreachable')
      .map((n) => ({ node_id: n.node_id, status: n.unreachable.status, error: n.unreachable.error }));
    const lag = replicaLag(status);
    if (a.json) {
      console.log(JSON.stringify({
        poll: i, nodes: state.nodes.map((n) => n.node_id), primary_claims: state.primary_claims, unreachable, lag,
      }));
    } else {
      console.log(`poll ${i}: cluster ${state.cluster_id}, ${state.nodes.length} nodes, ` +
        `primary claims: ${state.primary_claims.map((c) => `${c.node_id}@epoch ${c.epoch}`).join(', ') || '-'}, ` +
        `unreachable: ${unreachable.map((u) => `${u.node_id} (${u.status}: ${u.error})`).join(', ') || '-'}`);
      for (const l of lag) console.log(`  ${l.replica}: ${l.lag_entries} entries behind ${l.seen_by}`);
    }
    if (i + 1 < a.count) await new Promise((r) => setTimeout(r, a.interval * 1000));
  }
  return 0;
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const clients = connect(load(), settings(a));
  try {
    return a.checkDenied ? await checkDenied(clients) : await poll(clients, a);
  } catch (err) {
    // A failed read is reported, not retried; re-run the program to read again.
    console.error(err.metadata ? describeError(err) : String(err));
    return 1;
  } finally {
    clients.observer.close();
    clients.actor.close();
  }
}

main().then((code) => { process.exitCode = code; });
