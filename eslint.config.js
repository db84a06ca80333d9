// Lint rules for the whole repo (formatting is Prettier's job: `npm run format`).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['**/node_modules/**', '**/dist/**', '**/.wrangler/**', '**/.turbo/**', '**/test-results/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      'no-console': ['error', { allow: ['error', 'warn'] }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
    },
  },
  {
    // Command-line entry points, examples and test tooling talk to a terminal.
    files: ['**/cli.ts', 'test/**/*.ts', '**/bin/*.ts', 'examples/**', 'relay-node/examples/*.ts'],
    rules: { 'no-console': 'off' },
  },
  {
    // The examples are plain Node scripts, as a user would write them.
    files: ['examples/**/*.mjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly' } },
  },
);
