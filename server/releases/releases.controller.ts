import { Body, Controller, Get, Inject, Param, Post, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiOperation, ApiTags } from '@nestjs/swagger';
import { z } from 'zod';
import { parseBody } from '../common/zod-body.ts';
import { createReleaseBody, ReleaseService } from './release.service.ts';

const pageQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  offset: z.coerce.number().int().min(0).default(0),
});

@ApiTags('releases')
@ApiBearerAuth()
@Controller('api/v1/releases')
export class ReleasesController {
  constructor(@Inject(ReleaseService) private readonly releases: ReleaseService) {}

  @Post()
  @ApiOperation({
    summary:
      'Create a release: a name plus one artifact per board (or `*` for every board an artifact lists)',
  })
  @ApiBody({ schema: z.toJSONSchema(createReleaseBody) as object })
  create(@Body() body: unknown) {
    return this.releases.create(parseBody(createReleaseBody, body));
  }

  @Get()
  @ApiOperation({ summary: 'List releases, newest first' })
  async list(@Query() query: unknown) {
    const { limit, offset } = parseBody(pageQuery, query);
    return { releases: await this.releases.list(limit, offset), limit, offset };
  }

  @Get(':idOrName')
  @ApiOperation({ summary: 'A release by id or name' })
  get(@Param('idOrName') idOrName: string) {
    return this.releases.getOrThrow(idOrName);
  }
}
