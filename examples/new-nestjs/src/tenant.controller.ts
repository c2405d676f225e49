// Not yet ported: DELETE /api/tenants/current/members/:member_id and
// GET /api/tenants/current/usage. Members are listed by name here (the legacy
// service lists them by join date).
import { Body, Controller, Get, Post, Query, UseGuards } from '@nestjs/common';
import { ApiCookieAuth, ApiTags } from '@nestjs/swagger';
import { AuthGuard, CurrentTenant } from './auth';
import { MemberIn, PageQuery } from './dto';
import { Store, paginate, tenantInfo } from './store';

@ApiTags('tenant')
@ApiCookieAuth('access_token')
@UseGuards(AuthGuard)
@Controller('api/tenants/current')
export class TenantController {
  constructor(private readonly store: Store) {}

  @Get()
  current(@CurrentTenant() tenant: string) {
    return tenantInfo(tenant);
  }

  @Get('members')
  members(@CurrentTenant() tenant: string, @Query() query: PageQuery) {
    const members = [...this.store.tenantMembers(tenant)].sort((a, b) => a.name.localeCompare(b.name));
    return paginate(members, query.page, query.page_size);
  }

  @Post('members')
  invite(@CurrentTenant() tenant: string, @Body() body: MemberIn) {
    const member = { id: this.store.newId(), email: body.email, name: body.name, role: body.role, joined_at: new Date() };
    this.store.tenantMembers(tenant).push(member);
    return member;
  }
}
