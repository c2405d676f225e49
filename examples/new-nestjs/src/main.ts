// The new NestJS service (fastify adapter): `node dist/main.js`.
// PORT (default 3000) and HOST (default 127.0.0.1) choose where it listens;
// the OpenAPI document is served at /api-json. With EXAMPLE_TEST_HOOKS=1 it
// records every request carrying an `x-test-id` header and lists them at
// GET /_test/received, so tests can prove which side a request reached.
import 'reflect-metadata';
import { ValidationPipe } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, NestFastifyApplication } from '@nestjs/platform-fastify';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { AppModule } from './app.module';

const MAX_RECORDED = 10_000;

interface Received { method: string; path: string; test_id: string }

function installTestHooks(app: NestFastifyApplication): void {
  const received: Received[] = [];
  const fastify = app.getHttpAdapter().getInstance();
  fastify.addHook('onRequest', async (request) => {
    const testId = request.headers['x-test-id'];
    if (typeof testId === 'string') {
      if (received.length >= MAX_RECORDED) received.shift();
      received.push({ method: request.method, path: request.url.split('?')[0], test_id: testId });
    }
  });
  fastify.get('/_test/received', async (request) => {
    const testId = (request.query as Record<string, string | undefined>).test_id;
    const items = received.filter((r) => testId === undefined || r.test_id === testId);
    return { count: items.length, requests: items };
  });
}

async function bootstrap(): Promise<void> {
  const app = await NestFactory.create<NestFastifyApplication>(AppModule, new FastifyAdapter(), {
    logger: ['error', 'warn'],
  });
  app.useGlobalPipes(new ValidationPipe({ transform: true, whitelist: true }));
  const document = SwaggerModule.createDocument(
    app,
    new DocumentBuilder().setTitle('Shop API (new, NestJS)').setVersion('2.0.0-beta').build(),
  );
  app.getHttpAdapter().getInstance().get('/api-json', async () => document);
  if (process.env.EXAMPLE_TEST_HOOKS === '1') installTestHooks(app);
  app.enableShutdownHooks();
  const port = Number(process.env.PORT ?? 3000);
  const host = process.env.HOST ?? '127.0.0.1';
  await app.listen(port, host);
  console.log(`new-nestjs listening on http://${host}:${port}`);
}

bootstrap().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
