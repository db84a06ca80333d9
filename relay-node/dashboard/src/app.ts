import { html, LitElement, nothing } from 'lit';
import type { StatusEvent } from '../../src/dashboard/status-schema.ts';
import { ago } from './format.ts';
import { applyEvent, type DashboardModel, emptyModel, short } from './model.ts';
import { edgePanel, nodePanel, panel, relaysPanel, sourcesPanel, storagePanel, topicsPanel } from './panels.ts';
import { keepReading, type StreamState } from './sse.ts';
import './time-chart.ts';
import type { TimeChart } from './time-chart.ts';
import './topic-tail.ts';

const TOKEN_KEY = 'anode.admin_token';
/** The relay sends a status every second: older than this, what the page shows is not live. */
const STALE_MS = 3_000;
/** How long a failed action (Forget) stays in the banner. */
const ACTION_ERROR_MS = 15_000;

/**
 * The whole page: reads `/v1/status/stream`, folds each event into the model and renders the
 * panels. Light DOM, so one stylesheet (and uPlot's) styles everything.
 */
export class AnodeDashboard extends LitElement {
  #model: DashboardModel = emptyModel();
  #connection: 'connecting' | StreamState = 'connecting';
  /** Why the stream is retrying or was refused, or the auth failure's message. */
  #detail = '';
  /** When (this browser's clock) the last status event arrived: the relay's clock may differ. */
  #receivedAt: number | undefined;
  #actionError: { text: string; at: number } | undefined;
  #stop: (() => void) | undefined;
  // Re-render every second even when no event comes: "updated 7s ago" must keep counting.
  #ticker: ReturnType<typeof setInterval> | undefined;

  protected override createRenderRoot() {
    return this;
  }

  override connectedCallback() {
    super.connectedCallback();
    this.#connect();
    this.#ticker = setInterval(() => this.requestUpdate(), 1000);
  }

  override disconnectedCallback() {
    super.disconnectedCallback();
    this.#stop?.();
    clearInterval(this.#ticker);
  }

  #token = () => sessionStorage.getItem(TOKEN_KEY) ?? undefined;

  #connect() {
    this.#stop?.();
    this.#stop = keepReading(
      '/v1/status/stream',
      this.#token,
      (event) => {
        if (event.event !== 'status') return;
        this.#model = applyEvent(this.#model, JSON.parse(event.data) as StatusEvent);
        this.#receivedAt = Date.now();
        this.requestUpdate();
      },
      (state, detail) => {
        this.#connection = state;
        this.#detail = detail ?? '';
        this.requestUpdate();
      },
    );
  }

  /** Forget a relay that is down (`DELETE /v1/mesh/peers/:peer`); the next event shows the result. */
  #forget = async (peer: string) => {
    const headers: Record<string, string> = {};
    const token = this.#token();
    if (token) headers.authorization = `Bearer ${token}`;
    let failure: string | undefined;
    try {
      const response = await fetch(`/v1/mesh/peers/${encodeURIComponent(peer)}`, { method: 'DELETE', headers });
      if (!response.ok) {
        const body = (await response.json().catch(() => ({}))) as { error?: { message?: string } };
        failure = body.error?.message ?? `HTTP ${response.status}`;
      }
    } catch (error) {
      failure = error instanceof Error ? error.message : String(error);
    }
    this.#actionError = failure ? { text: `Forget ${short(peer)}: ${failure}`, at: Date.now() } : undefined;
    this.requestUpdate();
  };

  protected override updated() {
    // On a phone each table row is a card: every cell shows its column's name (styles.css).
    for (const table of this.querySelectorAll<HTMLTableElement>('table.cards')) {
      const heads = [...table.querySelectorAll('thead th')].map((th) => th.textContent?.trim() ?? '');
      for (const row of table.tBodies[0]?.rows ?? []) {
        [...row.cells].forEach((cell, i) => {
          if (cell.dataset.label !== heads[i]) cell.dataset.label = heads[i] ?? '';
        });
      }
    }
    const { series } = this.#model;
    const throughput = this.querySelector<TimeChart>('#throughput-chart');
    if (throughput) throughput.data = [series.time, series.published, series.delivered];
    const latency = this.querySelector<TimeChart>('#latency-chart');
    if (latency) latency.data = [series.time, series.publish_latency_ms, series.store_append_ms];
  }

  #tokenForm() {
    return html`<form
      class="panel token"
      @submit=${(e: Event) => {
        e.preventDefault();
        const input = (e.target as HTMLFormElement).elements.namedItem('token') as HTMLInputElement;
        sessionStorage.setItem(TOKEN_KEY, input.value);
        this.#connection = 'connecting';
        this.#connect();
      }}
    >
      <h2>Admin token needed</h2>
      <p role="alert">${this.#detail}</p>
      <label>Admin token <input name="token" type="password" autocomplete="off" required /></label>
      <button type="submit">Open dashboard</button>
      <p class="muted">Kept in this tab only (sessionStorage).</p>
    </form>`;
  }

  /** Connection trouble, newest first: what makes the figures below not live. */
  #connectionProblems(age: number | undefined): string[] {
    const why = this.#detail ? ` (${this.#detail})` : '';
    if (this.#connection === 'retrying') return [`The status stream is disconnected${why}`];
    if (this.#connection === 'refused') return [`The status stream was refused${why}`];
    if (this.#connection === 'open' && age !== undefined && age > STALE_MS) {
      return [`No status update for ${Math.round(age / 1000)}s: the relay may be frozen or unreachable`];
    }
    return [];
  }

  #banner() {
    const { problems } = this.#model;
    const now = Date.now();
    const age = this.#receivedAt === undefined ? undefined : now - this.#receivedAt;
    const stale = age !== undefined && age > STALE_MS;
    const live =
      this.#connection === 'open'
        ? stale
          ? `stale: last update ${ago(this.#receivedAt)}`
          : `live, updated ${ago(this.#receivedAt)}`
        : this.#connection === 'retrying'
          ? `connection lost: retrying${this.#receivedAt ? `; last update ${ago(this.#receivedAt)}` : ''}`
          : this.#connection === 'refused'
            ? 'stopped'
            : 'connecting…';
    if (this.#actionError && now - this.#actionError.at > ACTION_ERROR_MS) this.#actionError = undefined;
    const all = [...this.#connectionProblems(age), ...(this.#actionError ? [this.#actionError.text] : []), ...problems];
    return html`<div class="banner ${all.length > 0 ? 'error' : 'ok'}" role="status" data-testid="banner">
      ${
        all.length === 0
          ? html`<strong>✓ All healthy</strong>`
          : html`<strong>✕ ${all.length} problem${all.length === 1 ? '' : 's'}</strong>
              <ul>
                ${all.map((p) => html`<li>${p}</li>`)}
              </ul>`
      }
      <span class="muted live" data-testid="live">${live}</span>
    </div>`;
  }

  override render() {
    const status = this.#model.event?.status;
    return html`<header>
        <h1>aNode cluster</h1>
        ${status ? html`<span class="muted">node <code>${status.node.id}</code></span>` : nothing}
      </header>
      <main id="main">
        ${this.#connection === 'unauthorized' ? this.#tokenForm() : this.#banner()}
        ${
          status
            ? html`<div class="grid">
                ${relaysPanel(this.#model, status, (peer) => void this.#forget(peer))} ${nodePanel(status)}
                ${storagePanel(this.#model, status)}
                ${panel(
                  'charts',
                  'Throughput and latency (last 5 minutes)',
                  html`<time-chart
                      id="throughput-chart"
                      role="img"
                      aria-label="Messages per second published and delivered"
                      .unit=${'/s'}
                      .lines=${[
                        { label: 'published', color: '#1f5fbf' },
                        { label: 'delivered', color: '#2b7a3d', dash: [6, 3] },
                      ]}
                    ></time-chart>
                    <time-chart
                      id="latency-chart"
                      role="img"
                      aria-label="Publish-to-ack latency and store write latency in milliseconds"
                      .unit=${'ms'}
                      .lines=${[
                        { label: 'publish → ack', color: '#8a3ffc' },
                        { label: 'store write', color: '#b25e00', dash: [6, 3] },
                      ]}
                    ></time-chart>`,
                )}
                ${edgePanel(this.#model, status)} ${sourcesPanel(this.#model, status)} ${topicsPanel(this.#model)}
                ${panel(
                  'tail',
                  'Live tail',
                  html`<topic-tail
                    .token=${this.#token}
                    .topics=${this.#model.shownTopics.map((t) => t.topic)}
                  ></topic-tail>`,
                )}
              </div>`
            : nothing
        }
      </main>`;
  }
}

customElements.define('anode-dashboard', AnodeDashboard);
