// HS256 JWTs in the HTTP-only `access_token` cookie, the same tokens and the
// same shared secret (EXAMPLE_JWT_SECRET) as the legacy FastAPI service.
import { createHmac, timingSafeEqual } from 'node:crypto';
import {
  CanActivate,
  ExecutionContext,
  ForbiddenException,
  Injectable,
  UnauthorizedException,
  createParamDecorator,
} from '@nestjs/common';

export const DEFAULT_SECRET = 'turnout-example-secret';

export interface Principal {
  sub: string;
  tenant: string | null;
  role: string;
}

interface AuthedRequest {
  headers: Record<string, string | string[] | undefined>;
  principal?: Principal;
}

function cookie(header: string | string[] | undefined, name: string): string | undefined {
  const text = Array.isArray(header) ? header.join('; ') : header ?? '';
  for (const part of text.split(';')) {
    const [key, ...rest] = part.trim().split('=');
    if (key === name) return rest.join('=');
  }
  return undefined;
}

function b64json(part: string): unknown {
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
}

export function decodeToken(token: string, secret: string): Record<string, unknown> | null {
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  const expected = createHmac('sha256', secret).update(`${parts[0]}.${parts[1]}`).digest();
  const signature = Buffer.from(parts[2], 'base64url');
  if (signature.length !== expected.length || !timingSafeEqual(signature, expected)) return null;
  try {
    const header = b64json(parts[0]) as Record<string, unknown>;
    const claims = b64json(parts[1]) as Record<string, unknown>;
    if (header?.alg !== 'HS256' || typeof claims !== 'object' || claims === null) return null;
    if (typeof claims.exp === 'number' && claims.exp < Date.now() / 1000) return null;
    return claims;
  } catch {
    return null;
  }
}

@Injectable()
export class AuthGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const request = context.switchToHttp().getRequest<AuthedRequest>();
    const token = cookie(request.headers.cookie, 'access_token');
    const secret = process.env.EXAMPLE_JWT_SECRET ?? DEFAULT_SECRET;
    const claims = token ? decodeToken(token, secret) : null;
    if (!claims || typeof claims.sub !== 'string') throw new UnauthorizedException();
    request.principal = {
      sub: claims.sub,
      tenant: typeof claims.tenant === 'string' ? claims.tenant : null,
      role: typeof claims.role === 'string' ? claims.role : 'user',
    };
    return true;
  }
}

export const CurrentUser = createParamDecorator((_data: unknown, ctx: ExecutionContext) => {
  return ctx.switchToHttp().getRequest<AuthedRequest>().principal as Principal;
});

export const CurrentTenant = createParamDecorator((_data: unknown, ctx: ExecutionContext) => {
  const principal = ctx.switchToHttp().getRequest<AuthedRequest>().principal;
  if (!principal?.tenant) throw new ForbiddenException('Token has no tenant');
  return principal.tenant;
});

export function requireAdmin(principal: Principal): void {
  if (principal.role !== 'admin') throw new ForbiddenException('Platform admins only');
}
