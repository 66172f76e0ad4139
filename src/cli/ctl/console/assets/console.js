// AeroDB console: plain JavaScript, no framework, no build step, nothing from the network.
// It shows what the control plane answered, as text (never innerHTML), and recommends nothing:
// nodes appear in configuration order, none is highlighted or ranked. Views are read when the
// operator opens them or presses Refresh; nothing polls.
'use strict';
(() => {
  // ---------------------------------------------------------------- helpers
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'text') e.textContent = String(v);
      else if (k === 'class') e.className = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }
  const main = () => document.getElementById('main');
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
  function when(ms) {
    if (!ms) return '-';
    const d = new Date(Number(ms));
    return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
  }
  const enumName = (v, prefix) => (typeof v === 'string' ? v.replace(prefix, '').toLowerCase().replace(/_/g, ' ') : String(v));
  const role = (r) => enumName(r || 'ROLE_UNSPECIFIED', 'ROLE_').replace('unspecified', '-');
  function tag(text, kind) { return el('span', { class: 'tag ' + (kind || text).replace(/\s+/g, '-'), text }); }
  function table(headers, rows, attrs) {
    return el('div', { class: 'scroll' },
      el('table', attrs || {},
        el('thead', {}, el('tr', {}, headers.map((h) => el('th', { scope: 'col', text: h })))),
        el('tbody', {}, rows)));
  }
  const td = (v, cls) => el('td', { class: cls }, v);
  const num = (v) => td(v === undefined || v === null ? '-' : String(v), 'num');

  async function api(path, options) {
    const opts = Object.assign({ credentials: 'same-origin', headers: {} }, options || {});
    if (opts.body !== undefined) {
      opts.method = 'POST';
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(opts.body);
    }
    let resp;
    try {
      resp = await fetch(path, opts);
    } catch (e) {
      return { ok: false, status: 0, body: { error: { code: 'CONSOLE_UNREACHABLE', message: 'the console did not answer: ' + e, outcome: 'UNKNOWN' } } };
    }
    let body = null;
    try { body = await resp.json(); } catch (e) { body = { error: { code: 'HTTP_' + resp.status, message: resp.statusText } }; }
    return { ok: resp.ok, status: resp.status, body };
  }

  function errorBox(body, status) {
    const e = (body && body.error) || {};
    const lines = [
      el('strong', { text: e.code || 'error' }), ' ',
      e.message ? el('span', { text: e.message }) : null,
    ];
    const facts = [];
    if (e.outcome) facts.push('outcome: ' + e.outcome + (e.outcome === 'NOT_EXECUTED' ? ' (nothing was executed)' : ''));
    if (e.domain) facts.push('domain: ' + e.domain);
    if (e.invariants && e.invariants.length) facts.push('invariants: ' + e.invariants.join(', '));
    if (e.source) facts.push('from: ' + e.source);
    if (status) facts.push('HTTP ' + status);
    if (e.outcome === 'UNKNOWN' && body.idempotency_key) facts.push('the kernel ledger decides: look up ' + body.idempotency_key + ' under Outcome lookup');
    for (const [k, v] of Object.entries(e.metadata || {})) facts.push(k + ': ' + v);
    return el('div', { class: 'error', role: 'alert', 'data-error-code': e.code || '' }, lines, el('ul', { class: 'plain' }, facts.map((f) => el('li', { text: f }))));
  }

  function observedLine(stampMs, points) {
    const pts = (points || []).map((o) => `${o.node_id} at control_seq ${o.control_seq}, epoch ${o.epoch}, commit ${o.commit_index}`);
    return el('p', { class: 'stamp', 'data-observed-at': stampMs },
      stampMs ? 'Observed ' + when(stampMs) + ' (when the control plane answered this console). ' : '',
      'Observation points: ' + (pts.length ? pts.join('; ') : 'none') + '.');
  }

  function viewHeader(title, refresh) {
    const h = el('h2', { tabindex: '-1', text: title });
    const bar = el('p', {}, el('button', { type: 'button', onclick: refresh, 'data-refresh': '' }, 'Refresh'));
    return [h, bar];
  }

  // ---------------------------------------------------------------- session, navigation
  let session = { actions: false, audit: false };
  let lastCluster = null;
  const views = [];
  let current = null;

  function nav() {
    const n = clear(document.getElementById('nav'));
    for (const v of views) {
      n.append(el('button', {
        type: 'button', 'data-view': v.id, 'aria-current': v.id === current ? 'page' : false,
        onclick: () => show(v.id),
      }, v.title));
    }
  }

  async function show(id) {
    current = id;
    nav();
    const v = views.find((x) => x.id === id) || views[0];
    const m = clear(main());
    await v.render(m);
    const h = m.querySelector('h2');
    if (h) h.focus();
  }

  // ---------------------------------------------------------------- overview
  function lagOf(nodes, id) {
    const out = [];
    for (const n of nodes) {
      const s = n.snapshot;
      if (!s || !s.authority || s.authority.role !== 'ROLE_PRIMARY' || n.node_id === id) continue;
      const p = ((s.replication || {}).peers || []).find((x) => x.node_id === id);
      if (p) out.push(`${p.lag_entries} (per ${n.node_id})`);
    }
    return out.length ? out.join(', ') : '-';
  }

  function haltText(a) {
    if (!a || a.role !== 'ROLE_HALTED') return 'none';
    return enumName(a.halt_reason, 'HALT_REASON_') + (a.halt_detail ? ': ' + a.halt_detail : '');
  }

  async function renderOverview(m) {
    m.append(...viewHeader('Cluster at a glance', () => show('overview')));
    const r = await api('/api/cluster');
    if (!r.ok) { m.append(errorBox(r.body, r.status)); return; }
    const c = r.body.data;
    lastCluster = c;
    m.append(el('p', {}, 'Cluster ', el('code', { text: c.cluster_id }), ', nodes in configuration order.'));
    m.append(observedLine(r.body.observed_at_unix_ms, c.observed));
    const headers = ['Node', 'Reachable', 'Role', 'Epoch', 'Last index', 'Commit', 'Durable', 'Applied', 'Lag (entries)', 'Control seq', 'Following', 'Halt reason'];
    const rows = c.nodes.map((n) => {
      if (n.unreachable) {
        return el('tr', { class: 'unreachable', 'data-node': n.node_id, 'data-state': 'unreachable' },
          el('th', { scope: 'row', text: n.node_id }),
          td(tag('UNREACHABLE', 'unreachable')),
          el('td', { colspan: headers.length - 2, 'data-error': '' },
            'transport error: ' + n.unreachable.error + ' (' + n.unreachable.status + '); address ' + n.address));
      }
      const s = n.snapshot || {};
      const a = s.authority || {};
      const rep = s.replication || {};
      const o = s.observation || {};
      const rl = role(a.role);
      return el('tr', { 'data-node': n.node_id, 'data-state': 'reachable', 'data-role': rl },
        el('th', { scope: 'row', text: n.node_id }),
        td('reachable'),
        td(tag(rl)),
        num(a.epoch), num(rep.last_index), num(rep.commit_index), num(rep.durable_index), num(rep.applied_index),
        td(lagOf(c.nodes, n.node_id)), num(o.control_seq), td(rep.following || '-'), td(haltText(a)));
    });
    m.append(table(headers, rows, { id: 'overview-table' }));
    if ((c.primary_claims || []).length > 1) {
      m.append(el('p', { class: 'note' }, `${c.primary_claims.length} nodes report the primary role: ` +
        c.primary_claims.map((p) => `${p.node_id} (epoch ${p.epoch})`).join(', ')));
    }
    m.append(el('p', { class: 'note' }, 'Lag is as a primary reports it for its peers; a dash means no primary reports one.'));
  }

  // ---------------------------------------------------------------- node detail
  function dl(pairs) {
    return el('dl', {}, pairs.flatMap(([k, v]) => [el('dt', { text: k }), el('dd', {}, v === undefined || v === '' ? '-' : v)]));
  }

  function nodeDetail(v, stamp) {
    const s = v.snapshot || {};
    const a = s.authority || {}; const r = s.replication || {}; const p = s.promotion || {};
    const w = s.wal || {}; const l = s.ledger || {}; const o = s.observation || {};
    const out = [el('h3', { text: `Node ${v.node_id} at ${v.address}` }), observedLine(stamp, [o])];
    out.push(el('div', { class: 'explain' }, dl([
      ['role', tag(role(a.role))], ['halt reason', haltText(a)], ['epoch', String(a.epoch)],
      ['highest granted epoch', `${a.highest_granted_epoch} (to ${a.granted_to || '-'})`],
      ['known primary', a.known_primary ? `${a.known_primary} (epoch ${a.known_primary_epoch})` : '-'],
      ['led epoch', String(a.led_epoch)],
      ['last index / epoch', `${r.last_index} / ${r.last_epoch}`],
      ['commit / applied / durable', `${r.commit_index} / ${r.applied_index} / ${r.durable_index}`],
      ['following', r.following || '-'],
      ['current epoch fenced', p.current_epoch_fenced ? `yes, fence at ${p.fence_index}` : 'no'],
      ['known primary commit', String(p.known_primary_commit_index)],
      ['last promotion', p.last_promoted_epoch ? `epoch ${p.last_promoted_epoch}${p.last_promotion_forced ? ' (forced)' : ''}` : '-'],
      ['action in flight', p.action_in_flight ? 'yes' : 'no'],
      ['ledger', `${l.records} records, ${l.bytes} bytes, ${l.decided_keys} decided keys, control_seq ${l.control_seq}`],
      ['execute calls received', String(s.execute_calls_received)],
      ['diagnostics cost (bytes)', String(s.diagnostics_cost_bytes)],
    ])));
    out.push(el('h3', { text: 'Peers as this node sees them' }));
    out.push(table(['Peer', 'Connected', 'Durable index', 'Lag (entries)', 'Role', 'Epoch'],
      (r.peers || []).map((x) => el('tr', {}, el('th', { scope: 'row', text: x.node_id }), td(x.connected ? 'yes' : 'no'),
        num(x.durable_index), num(x.lag_entries), td(role(x.role)), num(x.epoch)))));
    out.push(el('h3', { text: 'WAL' }), walFacts(w, l));
    out.push(el('h3', { text: 'Snapshots' }), snapshotTable((s.snapshots || {}).snapshots || []));
    return out;
  }

  function walFacts(w, l) {
    return el('div', {},
      el('p', {}, `entries ${w.first_index}..=${w.last_index}, durable ${w.durable_index}, ${w.total_bytes} bytes, checksums: ${enumName(w.checksum_status, 'CHECKSUM_STATUS_')}, truncated tail: ${w.truncated_tail_bytes} bytes` +
        (l ? `; ledger ${l.records} records, ${l.bytes} bytes, ${l.decided_keys} decided keys, control_seq ${l.control_seq}` : '')),
      table(['Segment', 'First index', 'Last index', 'Bytes'], (w.segments || []).map((g) =>
        el('tr', {}, td(el('code', { text: g.name })), num(g.first_index), num(g.last_index), num(g.bytes)))));
  }

  function snapshotTable(list) {
    if (!list.length) return el('p', { text: 'no snapshots' });
    return table(['Name', 'Last index', 'Last epoch', 'Bytes', 'Valid', 'Error', 'Used at recovery'], list.map((x) =>
      el('tr', {}, td(el('code', { text: x.name })), num(x.last_index), num(x.last_epoch), num(x.bytes),
        td(x.valid ? 'valid' : tag('INVALID', 'failed')), td(x.error || '-'), td(x.used_at_recovery ? 'yes' : 'no'))));
  }

  let selectedNode = '';
  async function renderNode(m) {
    m.append(...viewHeader('Node detail', () => show('node')));
    if (!lastCluster) {
      const r = await api('/api/cluster');
      if (r.ok) lastCluster = r.body.data;
    }
    const ids = ((lastCluster || {}).nodes || []).map((n) => n.node_id);
    const input = el('input', { id: 'node-id', name: 'node', value: selectedNode, autocomplete: 'off', required: true });
    const form = el('form', { onsubmit: (ev) => { ev.preventDefault(); selectedNode = input.value.trim(); show('node'); } },
      el('label', { for: 'node-id' }, 'Node id', input), el('button', { type: 'submit' }, 'Show'),
      ids.length ? el('span', {}, ' configured: ', ids.map((id) => el('button', { type: 'button', 'data-node-button': id, onclick: () => { selectedNode = id; show('node'); } }, id))) : null);
    m.append(form);
    if (!selectedNode) return;
    const r = await api('/api/node?node=' + encodeURIComponent(selectedNode));
    if (!r.ok) { m.append(errorBox(r.body, r.status)); return; }
    m.append(...nodeDetail(r.body.data, r.body.observed_at_unix_ms));
  }

  // ---------------------------------------------------------------- per-node views
  function perNode(r, row, headers) {
    const d = r.body.data;
    const rows = d.nodes.map((n) => {
      if (n.unreachable) {
        return el('tr', { class: 'unreachable', 'data-node': n.node_id, 'data-state': 'unreachable' }, el('th', { scope: 'row', text: n.node_id }),
          el('td', { colspan: headers.length - 1 }, tag('UNREACHABLE', 'unreachable'), ' transport error: ' + n.unreachable.error + ' (' + n.unreachable.status + ')'));
      }
      return el('tr', { 'data-node': n.node_id, 'data-state': 'reachable' }, el('th', { scope: 'row', text: n.node_id }), row(n.facts || {}));
    });
    return [observedLine(r.body.observed_at_unix_ms, d.observed), table(headers, rows)];
  }

  function simpleView(id, title, path, headers, row, extra) {
    return async (m) => {
      m.append(...viewHeader(title, () => show(id)));
      const r = await api(path);
      if (!r.ok) { m.append(errorBox(r.body, r.status)); return; }
      m.append(...perNode(r, row, headers));
      if (extra) m.append(...extra(r.body.data));
    };
  }

  const renderReplication = simpleView('replication', 'Replication', '/api/replication',
    ['Node', 'Role', 'Epoch', 'Last index / epoch', 'Commit', 'Applied', 'Durable', 'Following', 'Peers (connected, durable index, lag)'],
    (f) => {
      const a = f.authority || {}; const r = f.replication || {};
      return [td(tag(role(a.role))), num(a.epoch), td(`${r.last_index} / ${r.last_epoch}`), num(r.commit_index), num(r.applied_index), num(r.durable_index),
        td(r.following || '-'), td((r.peers || []).map((p) => `${p.node_id}: ${p.connected ? 'connected' : 'not connected'}, ${p.durable_index}, lag ${p.lag_entries}`).join('; ') || '-')];
    });

  const renderPromotion = simpleView('promotion', 'Promotion facts', '/api/promotion',
    ['Node', 'Role', 'Epoch', 'Highest granted epoch', 'Last index / epoch', 'Current epoch fenced', 'Known primary commit', 'Last promotion', 'Action in flight'],
    (f) => {
      const a = f.authority || {}; const p = f.promotion || {};
      return [td(tag(role(a.role))), num(a.epoch), td(`${a.highest_granted_epoch} (to ${a.granted_to || '-'})`), td(`${f.last_index} / ${f.last_epoch}`),
        td(p.current_epoch_fenced ? `yes, fence at ${p.fence_index}` : 'no'), num(p.known_primary_commit_index),
        td(p.last_promoted_epoch ? `epoch ${p.last_promoted_epoch}${p.last_promotion_forced ? ' (forced)' : ''}` : '-'), td(p.action_in_flight ? 'yes' : 'no')];
    },
    () => [el('p', { class: 'note' }, 'These are the facts the kernel compares when it grants an epoch, as each node reported them.')]);

  const renderWal = simpleView('wal', 'WAL and ledger', '/api/wal',
    ['Node', 'Entries', 'Durable', 'Segments', 'Bytes', 'Checksums', 'Truncated tail (bytes)', 'Ledger'],
    (f) => {
      const w = f.wal || {}; const l = f.ledger || {};
      return [td(`${w.first_index}..=${w.last_index}`), num(w.durable_index), num((w.segments || []).length), num(w.total_bytes),
        td(enumName(w.checksum_status, 'CHECKSUM_STATUS_')), num(w.truncated_tail_bytes),
        td(`${l.records} records, ${l.bytes} bytes, ${l.decided_keys} decided keys, control_seq ${l.control_seq}`)];
    });

  const renderSnapshots = simpleView('snapshots', 'Snapshots', '/api/snapshots', ['Node', 'Snapshots'],
    (f) => [td(snapshotTable((f.snapshots || {}).snapshots || []))]);

  // ---------------------------------------------------------------- outcome lookup
  let outcomeKey = '';
  function decidedText(rec) {
    if (!rec) return '-';
    const act = rec.action || {};
    let s = `${enumName(rec.decision, 'DECISION_')}: ${enumName(act.kind, 'ACTION_KIND_')} ${act.target_node}${act.force ? ' (forced)' : ''} at control_seq ${rec.control_seq}`;
    if (rec.plan_epoch) s += `, plan epoch ${rec.plan_epoch}`;
    if (rec.rejection && rec.rejection.code) s += `; rejection ${rec.rejection.code}: ${rec.rejection.message || ''}`;
    return s;
  }
  async function renderOutcome(m) {
    m.append(el('h2', { tabindex: '-1', text: 'Outcome lookup by idempotency key' }));
    const input = el('input', { id: 'outcome-key', name: 'key', value: outcomeKey, autocomplete: 'off', size: 40, required: true });
    m.append(el('form', { onsubmit: (ev) => { ev.preventDefault(); outcomeKey = input.value.trim(); show('outcome'); } },
      el('label', { for: 'outcome-key' }, 'Idempotency key', input), el('button', { type: 'submit' }, 'Look up')));
    if (!outcomeKey) return;
    const r = await api('/api/outcome?key=' + encodeURIComponent(outcomeKey));
    if (!r.ok) { m.append(errorBox(r.body, r.status)); return; }
    const o = r.body.data;
    m.append(el('p', { class: 'stamp' }, 'Observed ' + when(r.body.observed_at_unix_ms) + '.'));
    m.append(el('div', { class: 'result', 'data-outcome-status': o.status },
      el('p', {}, 'Status: ', tag(enumName(o.status, 'KEY_STATUS_'), o.status === 'KEY_STATUS_DECIDED' ? 'executed' : 'declined')),
      o.decided_on ? el('p', { text: `Decided in ${o.decided_on}'s kernel ledger: ${decidedText(o.record)}` }) : null));
    m.append(table(['Node', 'Answer'], (o.nodes || []).map((n) => el('tr', {}, el('th', { scope: 'row', text: n.node_id }),
      td(n.unreachable ? `UNREACHABLE: ${n.unreachable.error} (${n.unreachable.status})`
        : (n.answer.found ? decidedText(n.answer.record) : (n.answer.in_flight ? 'in flight' : 'not known to this ledger')))))));
  }

  // ---------------------------------------------------------------- audit
  const auditFilter = { identity: '', command: '', stage: '', from: '', to: '', limit: '200', hideReads: true };
  let reconstructWith = { correlation_id: '', idempotency_key: '' };
  async function renderAudit(m) {
    m.append(...viewHeader('Audit trail', () => show('audit')));
    const inputs = {};
    const field = (k, label, type) => {
      inputs[k] = el('input', { id: 'audit-' + k, name: k, value: auditFilter[k], type: type || 'text', autocomplete: 'off' });
      return el('label', { for: 'audit-' + k }, label, inputs[k]);
    };
    const hide = el('input', { id: 'audit-hide-reads', type: 'checkbox', checked: auditFilter.hideReads });
    m.append(el('form', { onsubmit: (ev) => { ev.preventDefault(); for (const k of Object.keys(inputs)) auditFilter[k] = inputs[k].value.trim(); auditFilter.hideReads = hide.checked; show('audit'); } },
      el('fieldset', {}, el('legend', { text: 'Filter (empty matches everything)' }),
        field('identity', 'Identity (name or role/name)'), field('command', 'Command'), field('stage', 'Stage'),
        field('from', 'From (UTC)', 'datetime-local'), field('to', 'To (UTC)', 'datetime-local'), field('limit', 'Latest records', 'number'),
        el('label', { for: 'audit-hide-reads' }, 'Hide read records (in this page)', hide),
        el('button', { type: 'submit' }, 'Apply'))));
    const q = new URLSearchParams();
    for (const k of ['identity', 'command', 'stage', 'limit']) if (auditFilter[k]) q.set(k, auditFilter[k]);
    const ms = (v) => (v ? String(Date.parse(v + 'Z')) : '');
    if (auditFilter.from) q.set('time_from_unix_ms', ms(auditFilter.from));
    if (auditFilter.to) q.set('time_to_unix_ms', ms(auditFilter.to));
    const [recs, ver, cp] = await Promise.all([api('/api/audit/records?' + q), api('/api/audit/verify'), api('/api/audit/checkpoint')]);
    m.append(el('h3', { text: 'Verification' }));
    if (ver.ok) {
      const v = ver.body.data;
      m.append(el('div', { class: 'result', 'data-verify': v.ok ? 'ok' : 'failed' },
        el('p', {}, tag(v.ok ? 'VERIFIED' : 'VERIFICATION FAILED', v.ok ? 'ok' : 'failed'),
          ` ${v.records_checked} records (seq ${v.first_seq}..=${v.last_seq}), ${v.checkpoints_checked} checkpoint signatures, ${v.bytes_read} bytes; head ${v.head_hash}`),
        v.first_problem ? el('p', { text: 'first problem: ' + v.first_problem }) : null,
        el('p', { class: 'stamp', text: 'checked ' + when(ver.body.observed_at_unix_ms) })));
    } else m.append(errorBox(ver.body, ver.status));
    if (cp.ok) {
      const c = cp.body.data;
      m.append(el('p', {}, `Latest signed checkpoint: tree size ${c.tree_size}, root ${c.root_hash}, origin ${c.origin}; public key `, el('code', { text: c.public_key })));
      m.append(el('pre', { text: c.note }));
    } else m.append(errorBox(cp.body, cp.status));
    m.append(el('h3', { text: 'Timeline (sequence order)' }));
    if (!recs.ok) { m.append(errorBox(recs.body, recs.status)); } else {
      m.append(el('p', { class: 'stamp', text: 'Read ' + when(recs.body.observed_at_unix_ms) + '.' }));
      const all = recs.body.data.records;
      const shown = auditFilter.hideReads ? all.filter((r) => r.stage !== 'read') : all;
      m.append(el('p', { class: 'stamp', text: `${all.length} records read, ${shown.length} shown` + (auditFilter.hideReads ? ' (read records hidden)' : '') + '.' }));
      const rows = shown.map((r) => {
        const b = r.body || {};
        const who = b.identity ? `${b.identity.role}/${b.identity.name}` : (b.peer || '-');
        return el('tr', { 'data-stage': r.stage, 'data-command': r.command, 'data-key': b.idempotency_key || '' },
          num(r.seq), td(when(b.time_unix_ms), 'nowrap'), td(tag(r.stage)), td(r.command || '-'), td(b.target || '-'), td(who, 'nowrap'),
          td(r.outcome || '-'), td((b.error && b.error.code) || '-'), td(b.idempotency_key ? el('code', { text: b.idempotency_key }) : '-', 'nowrap'),
          td(el('button', { type: 'button', class: 'small', 'data-reconstruct': r.correlation_id, onclick: () => { reconstructWith = { correlation_id: r.correlation_id, idempotency_key: '' }; show('audit'); } }, 'Reconstruct ' + r.correlation_id.slice(0, 8))));
      });
      m.append(table(['Seq', 'Time', 'Stage', 'Command', 'Target', 'Identity', 'Outcome', 'Error', 'Idempotency key', 'Action'], rows, { id: 'audit-table' }));
    }
    m.append(el('h3', { text: 'Reconstruct an action' }));
    const ci = el('input', { id: 'rc-correlation', value: reconstructWith.correlation_id, autocomplete: 'off', size: 34 });
    const ki = el('input', { id: 'rc-key', value: reconstructWith.idempotency_key, autocomplete: 'off', size: 34 });
    m.append(el('form', { onsubmit: (ev) => { ev.preventDefault(); reconstructWith = { correlation_id: ci.value.trim(), idempotency_key: ki.value.trim() }; show('audit'); } },
      el('label', { for: 'rc-correlation' }, 'Correlation id', ci), el('label', { for: 'rc-key' }, 'or idempotency key', ki),
      el('button', { type: 'submit' }, 'Reconstruct')));
    if (reconstructWith.correlation_id || reconstructWith.idempotency_key) {
      const q2 = new URLSearchParams(reconstructWith.correlation_id ? { correlation_id: reconstructWith.correlation_id } : { idempotency_key: reconstructWith.idempotency_key });
      const r = await api('/api/audit/reconstruct?' + q2);
      if (!r.ok) m.append(errorBox(r.body, r.status)); else {
        const x = r.body.data;
        m.append(el('div', { class: 'result explain', id: 'reconstruction' },
          el('p', { text: x.summary }),
          dl([['correlation id', x.correlation_id], ['idempotency key', x.idempotency_key], ['command', x.command], ['target', x.target_node],
            ['requested by', x.requested_by], ['kernel ledger', x.kernel_ledger],
            ['missing stages', (x.missing_stages || []).length ? el('strong', { 'data-missing': x.missing_stages.join(',') }, 'missing: ' + x.missing_stages.join(', ')) : 'none']]),
          table(['Stage', 'Seq', 'Time', 'Outcome', 'Error'], (x.stages || []).map((s) => el('tr', {}, td(tag(s.stage)), num(s.seq), td(when(s.time_unix_ms)), td(s.outcome || '-'), td(s.error_code || '-'))))));
      }
    }
  }

  // ---------------------------------------------------------------- actions (only with --allow-actions)
  let pending = null; // { id } of the pending action this page holds
  let flow = null; // what the actions view shows
  const COMMANDS = [['demote', 'Demote the primary (standard confirmation)'], ['promote', 'Promote a replica (standard confirmation)'],
    ['force-promote', 'Force promotion, skipping the fence check (enhanced confirmation)'], ['diag', 'Run diagnostics (standard confirmation)']];

  function declinePendingOnLeave() {
    if (!pending) return;
    navigator.sendBeacon('/api/actions/decline', JSON.stringify({ id: pending.id }));
    pending = null;
  }

  function explanationBlock(p, ack) {
    const x = p.explanation || {}; const req = p.requirements || {};
    const act = x.action || {};
    return el('div', { class: 'explain', id: 'explanation' },
      el('h3', { text: 'Explanation (from the control plane)' }),
      el('p', {}, el('strong', { text: x.summary })),
      dl([
        ['command', enumName(x.command, 'COMMAND_')],
        ['kernel action', `${enumName(act.kind, 'ACTION_KIND_')} ${act.target_node}${act.force ? ' (force: fence check skipped)' : ''}`],
        ['plan epoch', String(x.plan_epoch)],
        ['expected control seq', String(x.expected_control_seq)],
        ['affected nodes', (x.affected_nodes || []).join(', ') || '-'],
        ['declared cost', x.command === 'COMMAND_RUN_DIAGNOSTICS' ? `${x.declared_cost_bytes} bytes` : '-'],
        ['confirmation', enumName(req.type, 'CONFIRMATION_TYPE_')],
        ['expires after', `${p.expires_after_seconds} s`],
        ['plan digest', el('code', { text: p.plan_digest })],
        ['correlation id', el('code', { text: p.correlation_id })],
        ['unreachable nodes', (x.unreachable_nodes || []).join(', ') || 'none'],
      ]),
      el('h3', { text: 'What cannot be undone' }),
      el('ul', { class: 'plain' }, (x.irreversible || []).map((s) => el('li', { text: s }))),
      el('h3', { text: 'Invariants' }),
      el('ul', { class: 'plain' }, (x.invariants || []).map((i) => el('li', {}, el('code', { text: i.id }), ' ' + i.statement))),
      el('h3', { text: 'Kernel checks, in the order the kernel performs them' }),
      table(['#', 'Check', 'Rejection code', 'Invariants', 'Skipped'], (x.kernel_checks || []).map((k) =>
        el('tr', {}, num(k.order), td(k.description), td(el('code', { text: k.rejection_code })), td((k.invariants || []).join(', ')), td(k.skipped ? 'SKIPPED' : 'no')))),
      el('h3', { text: 'Facts the explanation relies on' }),
      table(['Node', 'Fact', 'Value'], (x.facts || []).map((f) => el('tr', {}, td(f.node_id), td(f.name), td(f.value)))),
      observedLine(null, x.observed),
      ack || null);
  }

  function keyBox(key) {
    return el('div', { class: 'key', id: 'idempotency-key', 'data-key': key },
      el('p', {}, el('strong', { text: 'Idempotency key: ' }), el('code', { text: key })),
      el('p', { text: `If this page is lost, the kernel ledger still knows what happened: look the key up under Outcome lookup, or run: aerodbctl outcome ${key}` }));
  }

  async function renderActions(m) {
    m.append(el('h2', { tabindex: '-1', text: 'Actions' }));
    m.append(el('p', { class: 'note' }, 'Each action prints its idempotency key first, then the control plane\'s explanation; it runs only after you type the target node id ' +
      '(for a forced promotion also each overridden invariant id and the acceptance). The control plane checks what you typed. Leaving or reloading this page declines a pending action.'));
    if (!flow) {
      m.append(el('button', { type: 'button', class: 'primary', id: 'start-action', onclick: async () => {
        const r = await api('/api/actions/prepare', { body: {} });
        flow = r.ok ? { stage: 'choose', key: r.body.idempotency_key, token: r.body.token } : { stage: 'error', body: r.body, status: r.status };
        show('actions');
      } }, 'Start an action'));
      return;
    }
    if (flow.key) m.append(keyBox(flow.key));
    const again = el('button', { type: 'button', id: 'new-action', onclick: () => { flow = null; show('actions'); } }, 'Start another action');
    if (flow.stage === 'error') { m.append(errorBox(flow.body, flow.status), again); return; }
    if (flow.stage === 'choose') {
      const sel = el('select', { id: 'action-command', name: 'command' }, COMMANDS.map(([v, t]) => el('option', { value: v, text: t })));
      const target = el('input', { id: 'action-target', name: 'target', autocomplete: 'off', required: true });
      m.append(el('form', { id: 'action-request', onsubmit: async (ev) => {
        ev.preventDefault();
        const token = flow.token; flow.token = null; // one use, whatever happens
        const r = await api('/api/actions/request', { body: { token, command: sel.value, target: target.value.trim() } });
        if (!r.ok) flow = { stage: 'error', key: flow.key, body: r.body, status: r.status };
        else if (r.body.replayed) flow = { stage: 'replayed', key: flow.key, replayed: r.body.replayed };
        else { pending = { id: r.body.id }; flow = { stage: 'confirm', key: flow.key, res: r.body }; }
        show('actions');
      } },
      el('fieldset', {}, el('legend', { text: 'What to ask for' }),
        el('label', { for: 'action-command' }, 'Command', sel), el('label', { for: 'action-target' }, 'Target node id', target),
        el('button', { type: 'submit', class: 'primary' }, 'Request the explanation'))));
      return;
    }
    if (flow.stage === 'replayed') {
      const x = flow.replayed;
      m.append(el('div', { class: 'result', 'data-result': 'replayed' }, el('p', { text: `Already decided in ${x.node_id}'s kernel ledger; nothing was run again: ${decidedText(x.record)}` })), again);
      return;
    }
    if (flow.stage === 'confirm') {
      const res = flow.res; const p = res.pending; const req = p.requirements || {};
      const typed = el('input', { id: 'typed-target', name: 'typed_target', autocomplete: 'off', required: true, spellcheck: 'false' });
      const ackInputs = (res.acknowledgement_statements || []).map((a) => ({ id: a.id, input: el('input', { id: 'ack-' + a.id, 'data-ack': a.id, autocomplete: 'off', spellcheck: 'false' }), statement: a.statement }));
      const acceptance = req.responsibility_required ? el('input', { id: 'acceptance', autocomplete: 'off', spellcheck: 'false', size: 30 }) : null;
      const form = el('form', { id: 'action-confirm', onsubmit: async (ev) => {
        ev.preventDefault();
        const body = { id: res.id, token: res.token, typed_target: typed.value, acknowledged_invariants: ackInputs.map((a) => a.input.value).filter((v) => v !== ''), acceptance: acceptance ? acceptance.value : '' };
        res.token = null; pending = null;
        const r = await api('/api/actions/confirm', { body });
        flow = r.ok ? { stage: 'done', key: flow.key, response: r.body.response } : { stage: 'error', key: flow.key, body: r.body, status: r.status };
        show('actions');
      } },
      el('fieldset', {}, el('legend', { text: 'Confirm by typing' }),
        el('label', { for: 'typed-target' }, 'Type the target node id to confirm', typed),
        ackInputs.map((a) => el('label', { for: 'ack-' + a.id }, `Type ${a.id} to acknowledge overriding it: ${a.statement}`, a.input)),
        acceptance ? el('p', { text: req.responsibility_statement }) : null,
        acceptance ? el('label', { for: 'acceptance' }, `Type "${res.acceptance}" to accept it`, acceptance) : null,
        el('button', { type: 'submit', class: 'danger', id: 'confirm-button' }, 'Confirm'), ' ',
        el('button', { type: 'button', id: 'decline-button', onclick: async () => {
          const id = res.id; pending = null;
          const r = await api('/api/actions/decline', { body: { id } });
          flow = r.ok ? { stage: 'declined', key: flow.key, declined: r.body } : { stage: 'error', key: flow.key, body: r.body, status: r.status };
          show('actions');
        } }, 'Decline')));
      m.append(explanationBlock(p, form));
      return;
    }
    if (flow.stage === 'done') {
      const x = flow.response;
      const executed = x.outcome === 'ACTION_OUTCOME_EXECUTED';
      m.append(el('div', { class: 'result', id: 'action-result', 'data-result': executed ? 'executed' : 'replayed' },
        el('p', {}, tag(executed ? 'EXECUTED' : 'REPLAYED (nothing ran again)', executed ? 'executed' : 'declined'), ' ', decidedText(x.record)),
        el('p', { text: `control_seq after: ${x.control_seq_after}; correlation id ${x.correlation_id}; target ${x.target_node}` })), again);
      return;
    }
    if (flow.stage === 'declined') {
      m.append(el('div', { class: 'result', id: 'action-result', 'data-result': 'declined' },
        el('p', {}, tag('DECLINED', 'declined'), ` nothing was executed (outcome ${flow.declined.outcome}; correlation id ${flow.declined.correlation_id})`)), again);
    }
  }

  // ---------------------------------------------------------------- start
  async function start() {
    const r = await api('/api/session');
    if (!r.ok) { clear(main()).append(errorBox(r.body, r.status)); document.getElementById('who').textContent = 'not connected'; return; }
    session = r.body;
    document.getElementById('who').textContent = `control plane ${session.endpoint} as ${session.identity} · ` +
      (session.actions ? 'actions allowed (each explained and typed)' : 'read-only');
    views.push({ id: 'overview', title: 'Overview', render: renderOverview },
      { id: 'node', title: 'Node detail', render: renderNode },
      { id: 'replication', title: 'Replication', render: renderReplication },
      { id: 'promotion', title: 'Promotion', render: renderPromotion },
      { id: 'wal', title: 'WAL', render: renderWal },
      { id: 'snapshots', title: 'Snapshots', render: renderSnapshots },
      { id: 'outcome', title: 'Outcome lookup', render: renderOutcome });
    if (session.audit) views.push({ id: 'audit', title: 'Audit', render: renderAudit });
    // The actions view exists only when the console offers actions: a read-only page has no
    // mutation control at all.
    if (session.actions) {
      views.push({ id: 'actions', title: 'Actions', render: renderActions });
      window.addEventListener('pagehide', declinePendingOnLeave);
    }
    await show('overview');
  }
  document.addEventListener('DOMContentLoaded', start);
})();
