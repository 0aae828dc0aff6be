import { defineConfig } from 'vitest/config';

// The control plane embeds dist/ and serves it under a strict CSP
// (script-src 'self'; style-src 'self'): everything must be an external
// file, so no inline module-preload polyfill and no inlined assets.
export default defineConfig({
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    sourcemap: false,
    cssCodeSplit: true,
  },
  server: {
    // `npm run dev` against a local control plane (argosy dev).
    proxy: {
      '/api': { target: 'http://127.0.0.1:8080', changeOrigin: false },
    },
  },
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
  },
});
