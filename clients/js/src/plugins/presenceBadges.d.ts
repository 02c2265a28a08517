import type { Plugin } from '../index.js';

export interface Badge {
  connections: number;
  info: any;
}
export interface PresenceBadges extends Plugin {
  online(channel: string): Map<string, Badge>;
  isOnline(channel: string, uid: string): boolean;
}
export function presenceBadges(opts?: {
  /** Which channels to track (default: all subscribed). */
  channels?: (channel: string) => boolean;
  onChange?: (channel: string, online: Map<string, Badge> | undefined) => void;
}): PresenceBadges;
