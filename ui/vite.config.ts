/// <reference types="vitest/config" />
import { defineConfig } from 'vite';
import solid from 'vite-plugin-solid';

// `npm run dev` proxies /api to a running `cortex serve` (or the E2E mock server).
const apiTarget = process.env.CORTEX_API ?? 'http://127.0.0.1:8080';

export default defineConfig({
  plugins: [solid()],
  server: { proxy: { '/api': { target: apiTarget } } },
  build: {
    target: 'es2022',
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: false,
    rolldownOptions: { checks: { pluginTimings: false } },
  },
  test: {
    environment: 'jsdom',
    include: ['tests/**/*.test.ts'],
  },
});
