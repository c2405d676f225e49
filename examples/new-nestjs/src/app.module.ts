import { Module } from '@nestjs/common';
import { AccountController } from './account.controller';
import { HealthController } from './health.controller';
import { PlatformController } from './platform.controller';
import { PublicController } from './public.controller';
import { TenantController } from './tenant.controller';
import { UserController } from './user.controller';
import { Store } from './store';

@Module({
  controllers: [
    HealthController,
    PublicController,
    UserController,
    AccountController,
    TenantController,
    PlatformController,
  ],
  providers: [Store],
})
export class AppModule {}
