import { JSONPath } from 'jsonpath-plus';

/** jsonpath-plus's compiler of filter and script expressions, the one `eval: 'safe'` runs. */
const SafeScript = (JSONPath.prototype as unknown as { safeVm: { Script: new (code: string) => unknown } }).safeVm
  .Script;

/**
 * Why a JSONPath cannot run, or undefined. jsonpath-plus splits a path leniently (`$[` selects
 * the root) and compiles a filter only once it meets data, so a typo would select the wrong
 * items, or dead-letter every payload; a definition is checked once, when it is parsed.
 */
export function jsonPathProblem(path: string): string | undefined {
  const problem = unbalanced(path);
  if (problem) return problem;
  for (const segment of JSONPath.toPathArray(path)) {
    const inScript = scriptProblem(segment);
    if (inScript) return inScript;
  }
  return undefined;
}

/** A bracket, parenthesis or quote left open or closed twice (a backslash escapes the next character). */
function unbalanced(path: string): string | undefined {
  const open: string[] = [];
  let quote: string | undefined;
  for (let i = 0; i < path.length; i++) {
    const c = path[i] as string;
    if (c === '\\') i += 1;
    else if (quote) quote = c === quote ? undefined : quote;
    else if (c === '[' || c === '(') open.push(c);
    else if (c === ']' || c === ')') {
      if (open.pop() !== (c === ']' ? '[' : '(')) return `unexpected "${c}" at character ${i}`;
    } else if ((c === "'" || c === '"') && open.length > 0) quote = c; // a quote outside brackets is a name's
  }
  if (quote) return `unclosed ${quote} quote`;
  return open.length > 0 ? `unclosed "${open.at(-1)}"` : undefined;
}

/**
 * Compiles a path segment that is a filter (`?(…)`) or a script (`(…)`) as jsonpath-plus does when
 * it first runs it (JSONPath.prototype._eval: the `@` names become its sandbox's variables).
 */
function scriptProblem(segment: string): string | undefined {
  let code: string;
  if (segment.startsWith('?(')) {
    code = segment.replace(/^\?\((.*?)\)$/u, '$1');
    // A filter on a nested filter's matches (`?(@.a[?(…)])`): only the inner one is compiled.
    const nested = /@.?([^?]*)[['](\??\(.*?\))(?!.\)\])[\]']/u.exec(code);
    if (nested) return scriptProblem(nested[2] as string);
  } else if (segment.startsWith('(')) code = segment;
  else return undefined;
  const script = code
    .replaceAll('@parentProperty', '_$_parentProperty')
    .replaceAll('@parent', '_$_parent')
    .replaceAll('@property', '_$_property')
    .replaceAll('@root', '_$_root')
    .replaceAll('@path', '_$_path')
    .replaceAll(/@([.\s)[])/gu, '_$_v$1');
  try {
    new SafeScript(script);
    return undefined;
  } catch (error) {
    return `${JSON.stringify(segment)}: ${(error as Error).message}`;
  }
}
