import { html, nothing, type TemplateResult } from 'lit';
import type { RelayStatus } from '../../src/dashboard/status-schema.ts';
import { ago, badge, duration, ms, notConfigured, rate } from './format.ts';
import { type DashboardModel, short, storeHealth } from './model.ts';
import { sparkline } from './sparkline.ts';

/** One titled panel; tables scroll sideways on a phone (focusable, so keyboards can scroll). */
export const panel = (id: string, title: string, body: unknown) =>
  html`<section class="panel" id=${id} aria-labelledby="${id}-title">
    <h2 id="${id}-title">${title}</h2>
    ${body}
  </section>`;

const table = (label: string, head: string[], rows: TemplateResult[]) =>
  html`<div class="scroll" tabindex="0" role="region" aria-label=${label}>
    <table>
      <thead>
        <tr>
          ${head.map((h) => html`<th scope="col">${h}</th>`)}
        </tr>
      </thead>
      <tbody>
        ${rows}
      </tbody>
    </table>
  </div>`;

export function nodePanel(status: RelayStatus) {
  const node = status.node;
  return panel(
    'node',
    'This node',
    html`<dl class="facts">
      <dt>Node id</dt>
      <dd><code data-testid="node-id">${node.id}</code></dd>
      ${
        node.peer_id
          ? html`<dt>Peer id</dt>
              <dd><code>${node.peer_id}</code></dd>`
          : nothing
      }
      <dt>Version</dt>
      <dd>${node.version} (protocol ${node.protocol})</dd>
      <dt>Up for</dt>
      <dd>${duration(node.uptime_s)} (since ${new Date(node.started_at).toLocaleString()})</dd>
      <dt>Auth</dt>
      <dd>${node.auth === 'none' ? badge('warn', 'off: anyone may publish') : badge('ok', 'JWT')}</dd>
      <dt>Clients</dt>
      <dd data-testid="connections">${status.connections} connections, ${status.subscriptions} subscriptions</dd>
      ${
        node.multiaddrs?.length
          ? html`<dt>Addresses</dt>
              <dd>${node.multiaddrs.map((a) => html`<code class="addr">${a}</code> `)}</dd>`
          : nothing
      }
    </dl>`,
  );
}

export function peersPanel(model: DashboardModel, status: RelayStatus) {
  if (!status.peers && model.peers.length === 0) return panel('peers', 'Peers', notConfigured('Mesh'));
  const rows = model.peers.map(
    (p) =>
      html`<tr data-peer=${p.id} data-state=${p.up ? 'up' : 'down'}>
        <th scope="row"><code title=${p.id}>${short(p.id)}</code></th>
        <td>${p.up ? badge('ok', 'up') : badge('error', `down (last seen ${ago(p.last_seen)})`)}</td>
        <td>${p.connection}</td>
        <td>${ms(p.latency_ms)}</td>
        <td>${p.up_since ? ago(p.up_since) : '–'}</td>
        <td>${p.addrs.map((a) => html`<code class="addr">${a}</code> `)}</td>
      </tr>`,
  );
  // The mesh reports its gossip mesh per topic under `mesh.topics` (topic → peer ids).
  const meshTopics = (status.mesh as { topics?: Record<string, unknown> } | undefined)?.topics;
  const mesh = meshTopics ? Object.entries(meshTopics) : [];
  return panel(
    'peers',
    `Peers (${model.peers.filter((p) => p.up).length} up of ${model.peers.length})`,
    html`${
      rows.length === 0
        ? html`<p class="muted">No peers connected.</p>`
        : table('Peers', ['Peer', 'State', 'Connection', 'Round trip', 'Up since', 'Addresses'], rows)
    }
    ${
      mesh.length > 0
        ? html`<p class="muted">
            Gossip mesh:
            ${mesh.map(([topic, peers]) => html`<code>${topic}</code> ${Array.isArray(peers) ? peers.length : '?'} peers; `)}
          </p>`
        : nothing
    }`,
  );
}

export function edgePanel(status: RelayStatus) {
  const edge = status.edge as unknown;
  if (edge == null) return panel('edge', 'Edge links', notConfigured('Edge links'));
  const links = (Array.isArray(edge) ? edge : ((edge as { links?: unknown[] }).links ?? [])) as Record<
    string,
    unknown
  >[];
  if (links.length === 0) {
    return panel('edge', 'Edge links', html`<p class="muted">No edge link connected.</p>`);
  }
  const rows = links.map((link) => {
    const served = (link.durable_objects ?? link.dos ?? link.topics ?? []) as unknown[];
    const state = String(link.state ?? 'connected');
    const healthy = ['connected', 'open', 'up'].includes(state);
    return html`<tr>
      <th scope="row"><code>${String(link.id ?? link.name ?? link.url ?? '?')}</code></th>
      <td>${healthy ? badge('ok', state) : badge('error', state)}</td>
      <td>${served.map((d) => html`<code class="addr">${typeof d === 'string' ? d : JSON.stringify(d)}</code> `)}</td>
    </tr>`;
  });
  return panel('edge', 'Edge links', table('Edge links', ['Link', 'State', 'Durable Objects / topics'], rows));
}

export function topicsPanel(model: DashboardModel) {
  if (model.topics.length === 0) {
    return panel('topics', 'Topics', html`<p class="muted">No messages published on this node yet.</p>`);
  }
  const rows = model.topics.map(
    (t) =>
      html`<tr data-topic=${t.topic}>
        <th scope="row"><code>${t.topic}</code></th>
        <td class="num" data-field="published">${t.published}</td>
        <td class="num">${rate(t.publish_rate)}/s</td>
        <td class="num" data-field="delivered">${t.delivered}</td>
        <td class="num">${rate(t.delivery_rate)}/s</td>
        <td class="num" data-field="subscribers">${t.subscribers}</td>
        <td>${ago(t.last_published_at)}</td>
      </tr>`,
  );
  return panel(
    'topics',
    `Topics (${model.topics.length})`,
    table(
      'Topics',
      ['Topic', 'Published', 'Publish rate', 'Delivered', 'Delivery rate', 'Subscribers', 'Last message'],
      rows,
    ),
  );
}

export function sourcesPanel(model: DashboardModel, status: RelayStatus) {
  if (!status.sources) return panel('sources', 'Sources', notConfigured('Sources'));
  if (model.sources.length === 0) return panel('sources', 'Sources', html`<p class="muted">No sources.</p>`);
  const rows = model.sources.map(({ source: s, health, error, spark }) => {
    return html`<tr data-source=${s.name} data-health=${health}>
      <th scope="row">${s.name}</th>
      <td>${s.kind ?? ''}</td>
      <td>
        ${badge(health, s.state)}${
          s.state === 'standby' && s.owner
            ? html` <span class="muted" data-testid="source-owner" title=${s.owner}>on ${s.owner.slice(0, 8)}</span>`
            : nothing
        }
      </td>
      <td class="num">${ms(s.lag_ms)}</td>
      <td class="num">${s.rate == null ? '–' : `${rate(s.rate)}/s`}</td>
      <td>${sparkline(spark)}</td>
      <td>${ago(s.last_success)}</td>
      <td class="error-text">
        ${
          error
            ? html`<span data-testid="source-error">${error}</span>${
                  s.consecutive_failures
                    ? html` <span class="muted"
                        >(${s.consecutive_failures} failures in a row; next try ${ago(s.next_attempt)})</span
                      >`
                    : nothing
                }`
            : '–'
        }
      </td>
    </tr>`;
  });
  return panel(
    'sources',
    `Sources (${model.sources.length})`,
    table('Sources', ['Source', 'Kind', 'State', 'Lag', 'Rate', 'Trend', 'Last success', 'Last error'], rows),
  );
}

export function storagePanel(model: DashboardModel, status: RelayStatus) {
  const store = status.store;
  const health = storeHealth(store);
  const latency = model.series.store_append_ms.findLast((v) => v != null) ?? null;
  return panel(
    'storage',
    'Storage',
    html`<dl class="facts">
      <dt>Adapter</dt>
      <dd>${store.kind}</dd>
      <dt>Health</dt>
      <dd data-testid="store-health">${badge(health, store.state ?? (store.ok ? 'healthy' : 'unhealthy'))}</dd>
      <dt>Write latency</dt>
      <dd>${ms(latency)} (last batch average)</dd>
      <dt>Write queue</dt>
      <dd>${store.queued} pending</dd>
      <dt>Spool depth</dt>
      <dd>
        ${
          store.spool_depth == null
            ? html`<span class="muted">no spool (only with Cassandra)</span>`
            : `${store.spool_depth} messages waiting for Cassandra`
        }
      </dd>
    </dl>`,
  );
}
