import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

// The relay serves the page at `/` and its assets under `/dashboard/assets/`.
export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/dashboard/',
  logLevel: 'warn',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    chunkSizeWarningLimit: 200,
  },
});
