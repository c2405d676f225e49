// In-memory data: the same fixed catalogue and tenants as the legacy service,
// per-user state, and ids that are reproducible when EXAMPLE_SEED is set.
import { createHash, randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';

export const TAX_PERCENT = 20;

export interface ProductRecord { id: string; name: string; category: string; price_cents: number }
export interface OrderItemRecord { product_id: string; quantity: number; unit_price_cents: number }
export interface OrderRecord {
  id: string;
  status: string;
  items: OrderItemRecord[];
  subtotal_cents: number;
  tax_cents: number;
  total_cents: number;
  created_at: Date;
}
export interface MemberRecord { id: string; email: string; name: string; role: string; joined_at: Date }
export interface TenantRecord { id: string; name: string; plan: string; created_at: Date }

const CATALOGUE: Array<[string, string, number]> = [
  ['Field Notes', 'books', 1250],
  ['Graph Paper Pad', 'books', 600],
  ['The Strangler Fig', 'books', 3900],
  ['Go Board', 'games', 8900],
  ['Deck of Cards', 'games', 450],
  ['Chess Clock', 'games', 5400],
  ['Screwdriver Set', 'tools', 2999],
  ['Tape Measure', 'tools', 1199],
  ['Spirit Level', 'tools', 1799],
  ['Bench Vise', 'tools', 6450],
  ['Puzzle Cube', 'games', 999],
  ['Refactoring Handbook', 'books', 4500],
];
export const PRODUCTS: ProductRecord[] = CATALOGUE.map(([name, category, price], i) => ({
  id: `p-${String(i + 1).padStart(3, '0')}`,
  name,
  category,
  price_cents: price,
}));
export const PRODUCTS_BY_ID = new Map(PRODUCTS.map((p) => [p.id, p]));
export const CATEGORIES = [
  { slug: 'books', name: 'Books' },
  { slug: 'games', name: 'Games' },
  { slug: 'tools', name: 'Tools' },
];
export const TENANTS: Record<string, { id: string; name: string; plan: string }> = {
  acme: { id: 'acme', name: 'Acme Corp', plan: 'enterprise' },
  'acme-beta': { id: 'acme-beta', name: 'Acme Beta Programme', plan: 'enterprise' },
  globex: { id: 'globex', name: 'Globex', plan: 'pro' },
  initech: { id: 'initech', name: 'Initech', plan: 'free' },
};
export const FIXED_CREATED_AT = new Date(Date.UTC(2024, 0, 2, 9, 30));
const SEED_MEMBERS: Array<[string, string, string, Date]> = [
  ['m1', 'Zoe Adams', 'owner', new Date(Date.UTC(2024, 0, 5, 8, 0))],
  ['m2', 'Bob Brown', 'admin', new Date(Date.UTC(2024, 2, 10, 14, 15))],
  ['m3', 'Mia Chen', 'member', new Date(Date.UTC(2024, 5, 21, 11, 45))],
];

function titleCase(text: string): string {
  return text
    .split('-')
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join(' ');
}

export function tenantInfo(tenant: string): TenantRecord {
  const base = TENANTS[tenant] ?? { id: tenant, name: titleCase(tenant), plan: 'free' };
  return { ...base, created_at: FIXED_CREATED_AT };
}

/** Subtotal, tax and total in cents. */
export function priceOrder(items: OrderItemRecord[]): Pick<OrderRecord, 'subtotal_cents' | 'tax_cents' | 'total_cents'> {
  const subtotal = items.reduce((sum, i) => sum + i.unit_price_cents * i.quantity, 0);
  const tax = Math.floor((subtotal * TAX_PERCENT + 50) / 100);
  // The deliberate bug of this rewrite: the total forgets the tax.
  return { subtotal_cents: subtotal, tax_cents: tax, total_cents: subtotal };
}

export function paginate<T>(items: T[], page: number, pageSize: number) {
  const start = (page - 1) * pageSize;
  return { items: items.slice(start, start + pageSize), page, page_size: pageSize, total: items.length };
}

@Injectable()
export class Store {
  private readonly seed = process.env.EXAMPLE_SEED;
  private counter = 0;
  readonly profiles = new Map<string, Record<string, unknown>>();
  readonly preferences = new Map<string, { language: string; theme: string; newsletter: boolean }>();
  readonly orders = new Map<string, OrderRecord[]>();
  readonly members = new Map<string, MemberRecord[]>();
  readonly announcements: Array<{ id: string; message: string; created_at: Date }> = [];

  /** A uuid4; with EXAMPLE_SEED set, derived from the seed and a counter. */
  newId(): string {
    if (this.seed === undefined) return randomUUID();
    const bytes = createHash('sha256').update(`${this.seed}:${this.counter++}`).digest().subarray(0, 16);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = bytes.toString('hex');
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }

  profile(sub: string, tenant: string | null): Record<string, unknown> {
    let profile = this.profiles.get(sub);
    if (!profile) {
      profile = {
        id: sub,
        email: `${sub}@example.com`,
        display_name: titleCase(sub),
        tenant,
        avatar_url: null, // the field the rewrite added
        created_at: FIXED_CREATED_AT,
      };
      this.profiles.set(sub, profile);
    }
    return profile;
  }

  prefs(sub: string) {
    let prefs = this.preferences.get(sub);
    if (!prefs) {
      prefs = { language: 'en', theme: 'light', newsletter: false };
      this.preferences.set(sub, prefs);
    }
    return prefs;
  }

  addresses(sub: string) {
    return [
      { id: `${sub}-home`, label: 'home', line1: '1 Migration Way', city: 'Lyon', postal_code: '69001', country: 'FR' },
    ];
  }

  tenantMembers(tenant: string): MemberRecord[] {
    let members = this.members.get(tenant);
    if (!members) {
      members = SEED_MEMBERS.map(([suffix, name, role, joined]) => ({
        id: `${tenant}-${suffix}`,
        email: `${name.split(' ')[0].toLowerCase()}@${tenant}.example`,
        name,
        role,
        joined_at: joined,
      }));
      this.members.set(tenant, members);
    }
    return members;
  }
}
