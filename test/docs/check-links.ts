import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Every relative link in README.md and docs/*.md must reach a file, and every `#anchor` a heading
 * of it (GitHub's slugs). Web links are not fetched (CI has no internet).
 *   node test/docs/check-links.ts        prints each broken link; exits 1 if there is one
 */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * Docs other branches are writing (issue 15's edge sockets, issue 18's cluster view): a link to
 * one of them may point ahead until those branches merge. Only these names, and only while absent.
 */
const PENDING = new Set(['docs/edge-sockets.md', 'docs/cluster-view.md']);

export function docFiles(): string[] {
  const docs = readdirSync(join(ROOT, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .map((name) => `docs/${name}`);
  return ['README.md', ...docs.sort()];
}

/** The text outside fenced code blocks and inline code, where links live. */
function prose(markdown: string): string {
  return markdown.replace(/^(```|~~~)[\s\S]*?^\1/gm, '').replace(/`[^`\n]*`/g, '');
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens, repeats numbered. */
export function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  const text = markdown.replace(/^(```|~~~)[\s\S]*?^\1/gm, '');
  for (const [, heading] of text.matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const slug = heading!
      .toLowerCase()
      .replace(/<[^>]+>/g, '')
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const count = seen.get(slug) ?? 0;
    seen.set(slug, count + 1);
    anchors.add(count === 0 ? slug : `${slug}-${count}`);
  }
  return anchors;
}

export function brokenLinks(files = docFiles()): string[] {
  const broken: string[] = [];
  for (const file of files) {
    const text = readFileSync(join(ROOT, file), 'utf8');
    for (const [, target] of prose(text).matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target!)) continue; // https:, mailto:
      const [path, anchor] = target!.split('#') as [string, string | undefined];
      const absolute = path === '' ? join(ROOT, file) : resolve(dirname(join(ROOT, file)), decodeURI(path));
      const name = relative(ROOT, absolute);
      if (!existsSync(absolute)) {
        if (!PENDING.has(name)) broken.push(`${file}: ${target} (no file ${name})`);
        continue;
      }
      if (anchor !== undefined && absolute.endsWith('.md') && !anchorsOf(readFileSync(absolute, 'utf8')).has(anchor)) {
        broken.push(`${file}: ${target} (no heading #${anchor} in ${name})`);
      }
    }
  }
  return broken;
}

if (import.meta.main) {
  const broken = brokenLinks();
  for (const line of broken) console.error(line);
  if (broken.length > 0) process.exit(1);
  console.log(`links: ${docFiles().length} files checked, none broken`);
}
