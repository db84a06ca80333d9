/**
 * What to do about a file a setting names that cannot be read, by its errno code. Never the path:
 * a value set where its file's path goes (a secret, a key) would reach the logs.
 * `valueGoesIn`: where the value itself is set instead (`ANODE_JWT_SECRET`, `mesh_key`).
 */
export function unreadableFileHint(code: string | undefined, valueGoesIn: string): string {
  if (code === 'EACCES' || code === 'EPERM') {
    return "the relay's user cannot read it: make the file readable by that user (uid 1000 in the Docker image)";
  }
  if (code === 'EISDIR') return 'it names a folder: name the file in it';
  return `it takes a file's path; the value itself goes in ${valueGoesIn}`;
}
