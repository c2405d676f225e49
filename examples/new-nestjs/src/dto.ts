// Request bodies and query strings, validated by class-validator: a bad input
// is NestJS's 400 {statusCode, message: [...], error}, where FastAPI said 422.
import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import {
  ArrayMaxSize,
  ArrayMinSize,
  IsBoolean,
  IsIn,
  IsInt,
  IsOptional,
  IsString,
  Length,
  Matches,
  Max,
  Min,
  ValidateNested,
} from 'class-validator';

export class PageQuery {
  @ApiPropertyOptional({ default: 1, minimum: 1 })
  @IsOptional() @Type(() => Number) @IsInt() @Min(1)
  page = 1;

  @ApiPropertyOptional({ default: 20, minimum: 1, maximum: 100 })
  @IsOptional() @Type(() => Number) @IsInt() @Min(1) @Max(100)
  page_size = 20;
}

export class ProductQuery extends PageQuery {
  @ApiPropertyOptional()
  @IsOptional() @IsString()
  category?: string;
}

export class ProfileUpdate {
  @ApiProperty({ minLength: 1, maxLength: 50 })
  @IsString() @Length(1, 50)
  display_name: string;
}

export class PreferencesDto {
  @ApiProperty({ enum: ['en', 'fr', 'de'] })
  @IsIn(['en', 'fr', 'de'])
  language: string;

  @ApiProperty({ enum: ['light', 'dark'] })
  @IsIn(['light', 'dark'])
  theme: string;

  @ApiProperty()
  @IsBoolean()
  newsletter: boolean;
}

export class OrderItemIn {
  @ApiProperty({ pattern: '^p-\\d{3}$' })
  @IsString() @Matches(/^p-\d{3}$/)
  product_id: string;

  @ApiProperty({ minimum: 1, maximum: 100 })
  @IsInt() @Min(1) @Max(100)
  quantity: number;
}

export class OrderIn {
  @ApiProperty({ type: [OrderItemIn] })
  @ArrayMinSize(1) @ArrayMaxSize(20) @ValidateNested({ each: true }) @Type(() => OrderItemIn)
  items: OrderItemIn[];
}

export class MemberIn {
  @ApiProperty()
  @IsString() @Matches(/^[^@\s]+@[^@\s]+$/)
  email: string;

  @ApiProperty({ minLength: 1, maxLength: 60 })
  @IsString() @Length(1, 60)
  name: string;

  @ApiPropertyOptional({ enum: ['member', 'admin'], default: 'member' })
  @IsOptional() @IsIn(['member', 'admin'])
  role: string = 'member';
}

export class AnnouncementIn {
  @ApiProperty({ minLength: 1, maxLength: 280 })
  @IsString() @Length(1, 280)
  message: string;
}
