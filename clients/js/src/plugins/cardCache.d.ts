import type { Plugin, RecoveredFalseEvent } from '../index.js';

export interface CardCache extends Plugin {
  load(channel: string, members: Array<{ uid: string; card: any }> | Map<string, any> | Record<string, any>): void;
  get(channel: string, uid: string): any;
  cards(channel: string): Map<string, any>;
  isStale(channel: string): boolean;
}
export function cardCache(opts?: {
  /** Consume member_joined / member_left / card_updated publications (the app reads the cache). */
  consume?: boolean;
  onStale?: (channel: string, ev: RecoveredFalseEvent) => void;
  onChange?: (channel: string, uid: string, card: any) => void;
}): CardCache;
