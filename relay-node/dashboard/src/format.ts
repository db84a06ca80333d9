import { html } from 'lit';
import type { Health } from './model.ts';

const LABEL: Record<Health, string> = { ok: '✓ OK', warn: '▲ Degraded', error: '✕ Problem' };

/** A status badge: colour and a symbol and a word, never colour alone. */
export const badge = (health: Health, text?: string) =>
  html`<span class="badge ${health}" data-health=${health}
    >${text ? `${LABEL[health].slice(0, 1)} ${text}` : LABEL[health]}</span
  >`;

export const rate = (n: number) => (n >= 100 ? n.toFixed(0) : n.toFixed(1));

export const ms = (n: number | null | undefined) =>
  n == null ? '–' : n >= 100 ? `${n.toFixed(0)} ms` : `${n.toFixed(1)} ms`;

export function ago(time: string | number | null | undefined): string {
  if (time == null) return '–';
  const at = typeof time === 'number' ? time : Date.parse(time);
  if (Number.isNaN(at)) return String(time);
  const s = Math.max(0, Math.round((Date.now() - at) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86_400)}d ago`;
}

/** A time that may be in the future (a next attempt): "in 4s", "now", or "3s ago" if overdue. */
export function when(time: string | number | null | undefined): string {
  if (time == null) return '–';
  const at = typeof time === 'number' ? time : Date.parse(time);
  if (Number.isNaN(at)) return String(time);
  const s = Math.round((at - Date.now()) / 1000);
  if (s > 0) return s < 60 ? `in ${s}s` : `in ${Math.ceil(s / 60)}m`;
  return s === 0 ? 'now' : ago(at);
}

/** "1 connection", "2 connections". */
export const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

export const duration = (seconds: number) =>
  seconds < 60
    ? `${seconds}s`
    : seconds < 3600
      ? `${Math.floor(seconds / 60)}m ${seconds % 60}s`
      : `${Math.floor(seconds / 3600)}h ${Math.floor((seconds % 3600) / 60)}m`;

export const notConfigured = (what: string) => html`<p class="muted not-configured">${what}: not configured.</p>`;
