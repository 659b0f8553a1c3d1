import { Body, Controller, Inject, Param, Res } from '@nestjs/common';
import type { Response } from 'express';
import { operations } from '../../protocol/api/operations.ts';
import {
  createRollbackOrderBody,
  type RollbackOrder,
  type RotatedOnlineKey,
  rotateOnlineKeyBody,
  tufRootDocument,
  type TufStatus,
} from '../../protocol/api/tuf.ts';
import type { TufMetadata } from '../../protocol/tuf/metadata.ts';
import { ApiRoute } from '../common/api-route.ts';
import { notFound } from '../common/errors.ts';
import { parseBody } from '../common/zod-body.ts';
import { DeviceRepository } from '../devices/device.repository.ts';
import { ReleaseService } from '../releases/release.service.ts';
import { TufService } from './tuf.service.ts';

/** A versioned file never changes; the unversioned names move to each new version. */
const IMMUTABLE = 'public, max-age=31536000, immutable';

@Controller()
export class TufController {
  constructor(
    @Inject(TufService) private readonly tuf: TufService,
    @Inject(DeviceRepository) private readonly devices: DeviceRepository,
    @Inject(ReleaseService) private readonly releases: ReleaseService,
  ) {}

  /**
   * Answered as parsed JSON, which Express writes back byte for byte as it was stored (stored
   * text is JSON.stringify's, and stringifying what parsing it gives yields the same text), so
   * the hashes snapshot and timestamp carry match what a client receives.
   */
  @ApiRoute(operations.getTufMetadata)
  async metadata(
    @Param('file') file: string,
    @Res({ passthrough: true }) response: Response,
  ): Promise<TufMetadata> {
    const { document, immutable } = await this.tuf.metadataFile(file);
    response.setHeader('cache-control', immutable ? IMMUTABLE : 'no-cache');
    return document;
  }

  @ApiRoute(operations.getTufStatus)
  async status(): Promise<TufStatus> {
    return this.tuf.status();
  }

  @ApiRoute(operations.publishTufRoot)
  async publishRoot(@Body() body: unknown): Promise<TufStatus> {
    return this.tuf.publishRoot(parseBody(tufRootDocument, body));
  }

  @ApiRoute(operations.rotateTufOnlineKey)
  async rotate(@Body() body: unknown): Promise<RotatedOnlineKey> {
    return this.tuf.rotate(parseBody(rotateOnlineKeyBody, body).role);
  }

  @ApiRoute(operations.createRollbackOrder)
  async createRollbackOrder(@Body() body: unknown): Promise<RollbackOrder> {
    const order = parseBody(createRollbackOrderBody, body);
    let device: string | null = null;
    let release: string | null = null;
    if (order.device !== undefined) {
      if (!(await this.devices.get(order.device))) throw notFound(`device ${order.device}`);
      device = order.device;
    } else if (order.release !== undefined) {
      release = (await this.releases.getOrThrow(order.release)).name;
    }
    return this.tuf.issueRollbackOrder({ device, release, from: order.from, to: order.to });
  }
}
