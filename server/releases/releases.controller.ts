import { Body, Controller, Inject, Param, Query } from '@nestjs/common';
import { operations } from '../../protocol/api/operations.ts';
import {
  createReleaseBody,
  listReleasesQuery,
  type Release,
  type ReleaseList,
} from '../../protocol/api/releases.ts';
import { ApiRoute } from '../common/api-route.ts';
import { parseBody } from '../common/zod-body.ts';
import { ReleaseService } from './release.service.ts';

@Controller()
export class ReleasesController {
  constructor(@Inject(ReleaseService) private readonly releases: ReleaseService) {}

  @ApiRoute(operations.createRelease)
  async create(@Body() body: unknown): Promise<Release> {
    return this.releases.create(parseBody(createReleaseBody, body));
  }

  @ApiRoute(operations.listReleases)
  async list(@Query() query: unknown): Promise<ReleaseList> {
    const { limit, offset } = parseBody(listReleasesQuery, query);
    return { releases: await this.releases.list(limit, offset), limit, offset };
  }

  @ApiRoute(operations.getRelease)
  async get(@Param('idOrName') idOrName: string): Promise<Release> {
    return this.releases.getOrThrow(idOrName);
  }
}
