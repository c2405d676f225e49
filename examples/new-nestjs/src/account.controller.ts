// Not yet ported from the legacy service: GET /api/account/invoices and
// POST /api/account/addresses (Turnout falls back to legacy for the GET).
import {
  Body, Controller, Delete, Get, HttpCode, NotFoundException, Param, Post, Query, UseGuards,
} from '@nestjs/common';
import { ApiCookieAuth, ApiTags } from '@nestjs/swagger';
import { AuthGuard, CurrentUser, Principal } from './auth';
import { OrderIn, PageQuery } from './dto';
import { OrderRecord, PRODUCTS_BY_ID, Store, paginate, priceOrder } from './store';

@ApiTags('account')
@ApiCookieAuth('access_token')
@UseGuards(AuthGuard)
@Controller('api/account')
export class AccountController {
  constructor(private readonly store: Store) {}

  @Get('orders')
  listOrders(@CurrentUser() user: Principal, @Query() query: PageQuery) {
    const orders = [...(this.store.orders.get(user.sub) ?? [])].reverse();
    return paginate(orders, query.page, query.page_size);
  }

  @Post('orders')
  createOrder(@CurrentUser() user: Principal, @Body() body: OrderIn) {
    const items = body.items.map((item) => {
      const product = PRODUCTS_BY_ID.get(item.product_id);
      if (!product) throw new NotFoundException(`Product ${item.product_id} not found`);
      return { product_id: item.product_id, quantity: item.quantity, unit_price_cents: product.price_cents };
    });
    const order: OrderRecord = {
      id: this.store.newId(),
      status: 'placed',
      items,
      ...priceOrder(items),
      created_at: new Date(),
    };
    const orders = this.store.orders.get(user.sub) ?? [];
    orders.push(order);
    this.store.orders.set(user.sub, orders);
    return order;
  }

  private find(sub: string, orderId: string): OrderRecord {
    const order = this.store.orders.get(sub)?.find((o) => o.id === orderId);
    if (!order) throw new NotFoundException('Order not found');
    return order;
  }

  @Get('orders/:order_id')
  getOrder(@CurrentUser() user: Principal, @Param('order_id') orderId: string) {
    return this.find(user.sub, orderId);
  }

  @Delete('orders/:order_id')
  @HttpCode(204)
  cancelOrder(@CurrentUser() user: Principal, @Param('order_id') orderId: string): void {
    const order = this.find(user.sub, orderId);
    const orders = this.store.orders.get(user.sub) ?? [];
    orders.splice(orders.indexOf(order), 1);
  }

  @Get('addresses')
  addresses(@CurrentUser() user: Principal) {
    return this.store.addresses(user.sub);
  }
}
