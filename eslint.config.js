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
    // A relay's settings come from its config (file, flags, ANODE_* variables: config.ts), so
    // every one is validated and documented; a stray process.env read is a hidden setting.
    files: ['relay-node/src/**/*.ts', 'shared/src/**/*.ts', 'worker/src/**/*.ts', 'client/src/**/*.ts'],
    ignores: ['**/*.test.ts', 'relay-node/src/cli/relay-command.ts', 'relay-node/src/cli/token-command.ts'],
    rules: {
      'no-restricted-properties': [
        'error',
        { object: 'process', property: 'env', message: 'settings come from the config (relay-node/src/config.ts)' },
      ],
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
