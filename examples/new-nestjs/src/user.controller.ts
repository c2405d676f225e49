import { Body, Controller, Get, Patch, Put, UseGuards } from '@nestjs/common';
import { ApiCookieAuth, ApiTags } from '@nestjs/swagger';
import { AuthGuard, CurrentUser, Principal } from './auth';
import { PreferencesDto, ProfileUpdate } from './dto';
import { Store } from './store';

@ApiTags('user')
@ApiCookieAuth('access_token')
@UseGuards(AuthGuard)
@Controller('api/users')
export class UserController {
  constructor(private readonly store: Store) {}

  @Get('me')
  me(@CurrentUser() user: Principal) {
    return this.store.profile(user.sub, user.tenant);
  }

  @Patch('me')
  updateMe(@CurrentUser() user: Principal, @Body() body: ProfileUpdate) {
    const profile = this.store.profile(user.sub, user.tenant);
    profile.display_name = body.display_name;
    return profile;
  }

  @Get('me/preferences')
  preferences(@CurrentUser() user: Principal) {
    return this.store.prefs(user.sub);
  }

  @Put('me/preferences')
  putPreferences(@CurrentUser() user: Principal, @Body() body: PreferencesDto) {
    return Object.assign(this.store.prefs(user.sub), body);
  }
}
