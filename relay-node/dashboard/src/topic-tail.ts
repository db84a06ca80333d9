import { html, LitElement } from 'lit';
import { keepReading } from './sse.ts';

interface TailMessage {
  id: string;
  topic: string;
  cursor: string;
  source?: string;
  ts?: number;
  data: unknown;
}

const MAX_LINES = 200;

/** Live tail of one topic (or pattern) over `/v1/status/tail`, with a text filter. */
export class TopicTail extends LitElement {
  token: () => string | undefined = () => undefined;
  #topics: string[] = [];
  set topics(topics: string[]) {
    if (topics.join('\n') === this.#topics.join('\n')) return;
    this.#topics = topics;
    this.requestUpdate();
  }
  #topic = '';
  #filter = '';
  #paused = false;
  #messages: TailMessage[] = [];
  /** Messages the relay dropped for this tail (past 50 a second, or a reader too slow). */
  #dropped = 0;
  #state = 'idle';
  #stop: (() => void) | undefined;

  protected override createRenderRoot() {
    return this;
  }

  override disconnectedCallback() {
    super.disconnectedCallback();
    this.#stop?.();
  }

  #watch(topic: string) {
    this.#stop?.();
    this.#messages = [];
    this.#dropped = 0;
    this.#topic = topic.trim();
    if (!this.#topic) {
      this.#state = 'idle';
      return this.requestUpdate();
    }
    this.#state = 'connecting';
    const url = `/v1/status/tail?topic=${encodeURIComponent(this.#topic)}`;
    this.#stop = keepReading(
      url,
      this.token,
      (event) => {
        if (event.event === 'subscribed') this.#state = 'live';
        if (event.event === 'msg' && !this.#paused) {
          this.#messages = [JSON.parse(event.data) as TailMessage, ...this.#messages].slice(0, MAX_LINES);
        }
        if (event.event === 'dropped') this.#dropped += (JSON.parse(event.data) as { dropped: number }).dropped;
        this.requestUpdate();
      },
      (state, detail) => {
        // A refusal (a bad pattern, no admin token) is final and says why; only the rest retries.
        if (state === 'unauthorized' || state === 'refused') this.#state = `refused: ${detail ?? ''}`;
        else if (state === 'retrying') this.#state = `reconnecting${detail ? ` (${detail})` : ''}`;
        this.requestUpdate();
      },
    );
    this.requestUpdate();
  }

  override render() {
    const filter = this.#filter.toLowerCase();
    const shown = this.#messages.filter((m) => !filter || JSON.stringify(m).toLowerCase().includes(filter));
    return html`
      <form
        class="tail-controls"
        @submit=${(e: Event) => {
          e.preventDefault();
          const input = (e.target as HTMLFormElement).elements.namedItem('topic') as HTMLInputElement;
          this.#watch(input.value);
        }}
      >
        <label>Topic or pattern <input name="topic" list="known-topics" placeholder="prices.>" required /></label>
        <datalist id="known-topics">${this.#topics.map((t) => html`<option value=${t}></option>`)}</datalist>
        <button type="submit">Watch</button>
        <label
          >Filter
          <input
            name="filter"
            type="search"
            placeholder="text in the message"
            @input=${(e: Event) => {
              this.#filter = (e.target as HTMLInputElement).value;
              this.requestUpdate();
            }}
        /></label>
        <button
          type="button"
          aria-pressed=${this.#paused ? 'true' : 'false'}
          @click=${() => {
            this.#paused = !this.#paused;
            this.requestUpdate();
          }}
        >
          ${this.#paused ? 'Resume' : 'Pause'}
        </button>
      </form>
      <p class="muted" data-testid="tail-state">
        ${this.#topic ? html`Tail of <code>${this.#topic}</code>: ${this.#state}` : 'Choose a topic to watch.'}
        ${this.#messages.length > 0 ? ` · showing ${shown.length} of ${this.#messages.length}` : ''}
        ${this.#dropped > 0 ? html` · <span data-testid="tail-dropped">${this.#dropped} dropped by the relay</span>` : ''}
      </p>
      <ol class="tail" aria-live="polite" aria-label="Latest messages, newest first" data-testid="tail">
        ${shown.map(
          (m) =>
            html`<li>
              <time>${new Date(m.ts ?? Date.now()).toLocaleTimeString()}</time> <code>${m.topic}</code>
              <span class="muted">${m.source ?? ''}</span>
              <pre>${JSON.stringify(m.data)}</pre>
            </li>`,
        )}
      </ol>
    `;
  }
}

customElements.define('topic-tail', TopicTail);
