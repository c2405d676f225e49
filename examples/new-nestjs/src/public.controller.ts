import { Controller, Get, NotFoundException, Param, Query } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { ProductQuery } from './dto';
import { CATEGORIES, PRODUCTS, PRODUCTS_BY_ID, paginate } from './store';

@ApiTags('public')
@Controller('api/public')
export class PublicController {
  @Get('products')
  listProducts(@Query() query: ProductQuery) {
    const items = PRODUCTS.filter((p) => !query.category || p.category === query.category);
    return paginate(items, query.page, query.page_size);
  }

  @Get('products/:product_id')
  getProduct(@Param('product_id') productId: string) {
    const product = PRODUCTS_BY_ID.get(productId);
    if (!product) throw new NotFoundException('Product not found');
    return product;
  }

  @Get('categories')
  listCategories() {
    return CATEGORIES;
  }

  @Get('status')
  status() {
    return { status: 'ok', server_time: new Date() };
  }
}
