// What a page gets from the shell.

import type { Session } from './types';

export interface PageCtx {
  /** The page's container (inside <main>). */
  root: HTMLElement;
  session: Session;
  params: string[];
  query: URLSearchParams;
  /** False once the user has left the page: drop late results. */
  alive(): boolean;
  onCleanup(fn: () => void): void;
  /**
   * Calls `fn` every `ms` (after the previous call finished) until the page
   * is left or `fn` returns false.
   */
  every(ms: number, fn: () => unknown, immediate?: boolean): void;
  navigate(hash: string): void;
  setTitle(title: string): void;
}

export type PageModule = { render(ctx: PageCtx): void | Promise<void> };
