import { Controller, Inject, Query } from '@nestjs/common';
import { type AuditLog, listAuditQuery } from '../../protocol/api/audit.ts';
import { operations } from '../../protocol/api/operations.ts';
import { ApiRoute } from '../common/api-route.ts';
import { parseBody } from '../common/zod-body.ts';
import { AuditRepository } from './audit.repository.ts';

/** Reads the audit log. Deliberately nothing else: no route changes or deletes an entry. */
@Controller()
export class AuditController {
  constructor(@Inject(AuditRepository) private readonly audit: AuditRepository) {}

  @ApiRoute(operations.listAuditEntries)
  async list(@Query() query: unknown): Promise<AuditLog> {
    const filter = parseBody(listAuditQuery, query);
    return { entries: await this.audit.list(filter), limit: filter.limit };
  }
}
