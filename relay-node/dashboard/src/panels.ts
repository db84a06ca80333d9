import { html, nothing, type TemplateResult } from 'lit';
import type { RelayStatus, SourceStatus } from '../../src/dashboard/status-schema.ts';
import { ago, badge, duration, ms, notConfigured, plural, rate, when } from './format.ts';
import { type DashboardModel, latestWriteLatency, short } from './model.ts';
import { storeHealth } from './relays.ts';
import { sparkline } from './sparkline.ts';

/**
 * One titled panel. Tables scroll sideways on a wide screen; on a phone each row becomes a card
 * of label/value lines (the labels are copied from the header, see app.ts), so no column is
 * squeezed and nothing sits off-screen.
 */
export const panel = (id: string, title: string, body: unknown) =>
  html`<section class="panel" id=${id} aria-labelledby="${id}-title">
    <h2 id="${id}-title">${title}</h2>
    ${body}
  </section>`;

export const table = (label: string, head: string[], rows: TemplateResult[]) =>
  html`<div class="scroll" tabindex="0" role="region" aria-label=${label}>
    <table class="cards">
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
      <dd data-testid="connections">
        ${plural(status.connections, 'connection')}, ${plural(status.subscriptions, 'subscription')}
      </dd>
      ${
        node.multiaddrs?.length
          ? html`<dt>Addresses</dt>
              <dd>${node.multiaddrs.map((a) => html`<code class="addr">${a}</code> `)}</dd>`
          : nothing
      }
    </dl>`,
  );
}

const dash = '–';

/** Every relay of the mesh: this one, connected peers, and peers remembered as down. */
export function relaysPanel(model: DashboardModel, status: RelayStatus, forget: (peer: string) => void) {
  const rows = model.relays.map((r) => {
    const state = r.up
      ? badge('ok', r.self ? 'up (this relay)' : 'up')
      : badge('error', `down since ${ago(r.down_since)}`);
    const storeNodes = r.store?.nodes ?? [];
    return html`<tr data-relay=${r.key} data-peer=${r.peer_id ?? nothing} data-state=${r.up ? 'up' : 'down'}>
      <th scope="row">
        <code title=${r.node_id ?? ''}>${r.node_id ? short(r.node_id) : '(no status yet)'}</code>
        ${r.peer_id ? html`<br /><code class="muted" title=${r.peer_id}>${short(r.peer_id)}</code>` : nothing}
      </th>
      <td>
        ${state}<br /><span class="muted">
          ${r.up ? (r.up_since ? `up since ${ago(r.up_since)}` : dash) : `last seen ${ago(r.last_seen)}`}</span
        >
        ${
          r.status_error
            ? html`<br /><span class="error-text" title=${r.status_error}
                  >status not answered; shown as of ${ago(r.card_at)}</span
                >`
            : nothing
        }
        ${
          !r.up && r.peer_id
            ? html`<br /><button class="small" type="button" @click=${() => forget(r.peer_id as string)}>
                  Forget
                </button>`
            : nothing
        }
      </td>
      <td>${r.version ?? dash}</td>
      <td>
        ${
          !r.store
            ? dash
            : r.up
              ? html`${r.store.kind}
                ${badge(r.store_health ?? 'warn', r.store.state ?? (r.store.ok ? 'healthy' : 'unhealthy'))}`
              : html`${r.store.kind} <span class="muted">(last known)</span>`
        }
        ${
          storeNodes.length > 0
            ? html`<br /><span class="muted"
                  >${storeNodes.filter((n) => n.up).length} of ${storeNodes.length} Cassandra nodes up</span
                >`
            : nothing
        }
      </td>
      <td class="num">
        ${r.throughput ? html`${rate(r.throughput.published_per_s)}/s in<br />${rate(r.throughput.delivered_per_s)}/s out` : dash}
      </td>
      <td class="num">
        ${r.throughput ? html`ack ${ms(r.throughput.publish_latency_ms)}` : dash}
        ${r.latency_ms != null ? html`<br /><span class="muted">rtt ${ms(r.latency_ms)}</span>` : nothing}
      </td>
      <td class="num">${r.connections ?? dash}</td>
      <td>
        ${
          r.sources_owned
            ? html`${r.sources_owned.length} of ${r.sources_total ?? '?'}
                <span class="muted"
                  >${r.sources_owned.slice(0, 6).join(', ')}${r.sources_owned.length > 6 ? ', …' : ''}</span
                >`
            : dash
        }
      </td>
      <td>
        ${
          r.edge_links
            ? r.edge_links.length === 0
              ? 'none'
              : r.edge_links.map((l) => html`<code class="addr">${l.topic}</code>`)
            : dash
        }
      </td>
    </tr>`;
  });
  const up = model.relays.filter((r) => r.up).length;
  const meshTopics = (status.mesh as { topics?: Record<string, unknown> } | undefined)?.topics;
  const gossip = meshTopics ? Object.entries(meshTopics) : [];
  const sizes = gossip.map(([, peers]) => (Array.isArray(peers) ? peers.length : 0));
  return panel(
    'relays',
    `Relays (${up} up of ${model.relays.length})`,
    html`${table(
      'Relays',
      ['Relay', 'State', 'Version', 'Storage', 'Throughput', 'Latency', 'Clients', 'Sources owned', 'Edge links'],
      rows,
    )}
    ${
      !status.peers
        ? html`<p class="muted not-configured">Mesh: not configured (this relay runs alone).</p>`
        : gossip.length > 0
          ? html`<details class="muted">
              <summary>
                Gossip mesh: ${plural(gossip.length, 'topic')}, ${Math.min(...sizes)}–${Math.max(...sizes)} peers each
              </summary>
              ${gossip.map(([topic, peers]) => html`<code class="addr">${topic}: ${Array.isArray(peers) ? peers.length : '?'}</code>`)}
            </details>`
          : nothing
    }`,
  );
}

/** Edge links of this relay (the relay's side) and the edge Durable Objects of every relay's links. */
export function edgePanel(model: DashboardModel, status: RelayStatus) {
  const edge = status.edge as { links?: Record<string, unknown>[] } | undefined;
  if (edge == null && model.edgeObjects.length === 0) return panel('edge', 'Edge', notConfigured('Edge links'));
  const links = edge?.links ?? [];
  const linkRows = links.map((link) => {
    const state = String(link.state ?? '?');
    return html`<tr data-link=${String(link.topic)}>
      <th scope="row"><code>${String(link.topic ?? '?')}</code></th>
      <td>${badge(state === 'open' ? 'ok' : state === 'connecting' ? 'warn' : 'error', state)}</td>
      <td>${ago(link.connected_since as string | undefined)}</td>
      <td class="num">${Number(link.messages_from_edge ?? 0)}</td>
      <td class="num">${Number(link.messages_to_edge ?? 0)}</td>
    </tr>`;
  });
  const objectRows = model.edgeObjects.map(
    (o) =>
      html`<tr data-edge-object=${o.topic} data-via=${o.via}>
        <th scope="row"><code>${o.topic}</code></th>
        <td class="num" data-field="clients">${o.clients ?? dash}</td>
        <td>
          ${o.error ? badge('error', 'unreachable') : badge(o.link === 'open' ? 'ok' : 'warn', o.link ?? 'no link')}
        </td>
        <td><code title=${o.via}>${short(o.via)}</code></td>
        <td class="error-text">${o.error ?? dash}</td>
      </tr>`,
  );
  return panel(
    'edge',
    `Edge (${plural(model.edgeObjects.length, 'Durable Object')})`,
    html`<h3>Durable Objects (one per topic), as the edge reports them</h3>
      ${
        objectRows.length === 0
          ? html`<p class="muted">No edge link open on any relay.</p>`
          : table('Edge Durable Objects', ['Topic', 'Clients', 'Link', 'Linked relay', 'Error'], objectRows)
      }
      <h3>This relay's edge links</h3>
      ${
        edge == null
          ? notConfigured('Edge links')
          : linkRows.length === 0
            ? html`<p class="muted">No edge link connected.</p>`
            : table('Edge links', ['Topic', 'State', 'Connected', 'From edge', 'To edge'], linkRows)
      }`,
  );
}

export function topicsPanel(model: DashboardModel) {
  if (model.topics.length === 0) {
    return panel('topics', 'Topics', html`<p class="muted">No messages published on this node yet.</p>`);
  }
  const shown = model.shownTopics;
  const hidden = model.topics.length - shown.length;
  const rows = shown.map(
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
    html`${
      hidden > 0
        ? html`<p class="muted" data-testid="topics-hidden">
            Showing the ${shown.length} most recently published; ${plural(hidden, 'more topic')} not shown.
          </p>`
        : nothing
    }
    ${table(
      'Topics',
      ['Topic', 'Published', 'Publish rate', 'Delivered', 'Delivery rate', 'Subscribers', 'Last message'],
      rows,
    )}`,
  );
}

/** Streaming sources (an upstream WebSocket) succeed continuously: show the last item instead. */
function lastSuccess(s: SourceStatus) {
  // A websocket source's state is `connected` while its upstream is open (there is no `running`).
  const streaming = s.kind === 'websocket' && s.state === 'connected';
  const lag = (s as { data_lag_ms?: number | null }).data_lag_ms;
  if (!streaming) return ago(s.last_success);
  return lag == null ? 'streaming' : `streaming, last item ${ago(Date.now() - lag)}`;
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
      <td class="num">${s.rate == null ? dash : `${rate(s.rate)}/s`}</td>
      <td>${sparkline(spark)}</td>
      <td>${lastSuccess(s)}</td>
      <td class="error-text">
        ${
          error
            ? html`<span data-testid="source-error">${error}</span>${
                  s.consecutive_failures
                    ? html` <span class="muted"
                        >(${plural(s.consecutive_failures, 'failure')} in a row; next try ${when(s.next_attempt)})</span
                      >`
                    : nothing
                }`
            : dash
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
  const latency = latestWriteLatency(model.series);
  const nodes = model.cassandra;
  return panel(
    'storage',
    'Storage',
    html`<dl class="facts">
        <dt>Adapter</dt>
        <dd>${store.kind}</dd>
        <dt>Health</dt>
        <dd data-testid="store-health">${badge(health, store.state ?? (store.ok ? 'healthy' : 'unhealthy'))}</dd>
        <dt>Write latency</dt>
        <dd data-testid="write-latency">
          ${
            latency.current
              ? `${ms(latency.ms)} (average of the latest sample)`
              : latency.ms == null
                ? 'no writes yet'
                : `no writes lately; last ${ms(latency.ms)}, ${ago(latency.at)}`
          }
        </dd>
        <dt>Write queue</dt>
        <dd>${plural(store.queued, 'message')} pending</dd>
        <dt>Spool depth</dt>
        <dd>
          ${
            store.spool_depth == null
              ? html`<span class="muted">no spool (only with Cassandra)</span>`
              : `${plural(store.spool_depth, 'message')} waiting for Cassandra`
          }
        </dd>
      </dl>
      ${
        nodes.length > 0
          ? html`<h3>Cassandra nodes, as the driver sees them</h3>
              ${table(
                'Cassandra nodes',
                ['Node', 'State', 'Data center', 'Seen by'],
                nodes.map(
                  (n) =>
                    html`<tr data-cassandra=${n.address} data-state=${n.up ? 'up' : 'down'}>
                      <th scope="row"><code>${n.address}</code></th>
                      <td>${n.up ? badge('ok', 'up') : badge('error', 'down')}</td>
                      <td>${n.datacenter ?? dash}</td>
                      <td><code title=${n.seenBy}>${short(n.seenBy)}</code></td>
                    </tr>`,
                ),
              )}`
          : nothing
      }`,
  );
}
