// Not yet ported: GET /api/platform/stats.
import { Body, Controller, Get, Post, UseGuards } from '@nestjs/common';
import { ApiCookieAuth, ApiTags } from '@nestjs/swagger';
import { AuthGuard, CurrentUser, Principal, requireAdmin } from './auth';
import { AnnouncementIn } from './dto';
import { Store, TENANTS, tenantInfo } from './store';

@ApiTags('platform')
@ApiCookieAuth('access_token')
@UseGuards(AuthGuard)
@Controller('api/platform')
export class PlatformController {
  constructor(private readonly store: Store) {}

  @Get('tenants')
  tenants(@CurrentUser() user: Principal) {
    requireAdmin(user);
    return Object.keys(TENANTS).map(tenantInfo);
  }

  @Post('announcements')
  announce(@CurrentUser() user: Principal, @Body() body: AnnouncementIn) {
    requireAdmin(user);
    const announcement = { id: this.store.newId(), message: body.message, created_at: new Date() };
    this.store.announcements.push(announcement);
    return announcement;
  }
}
