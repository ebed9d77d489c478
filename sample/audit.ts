// audit: keeps the audit trail (events), refuses invalid records, and archives files sent as blobs.
import 'reflect-metadata';
import { createHash } from 'node:crypto';
import {
  type ArgumentsHost,
  Catch,
  Controller,
  Injectable,
  Module,
  UseFilters,
  UsePipes,
  ValidationPipe,
} from '@nestjs/common';
import {
  BaseRpcExceptionFilter,
  Ctx,
  EventPattern,
  Payload,
  RpcException,
} from '@nestjs/microservices';
import { IsIn, IsInt, IsNotEmpty, IsPositive, IsString } from 'class-validator';
import { type Observable, firstValueFrom } from 'rxjs';
import { AureliaContext, AureliaModule, ClientAurelia } from 'aurelia-mesh';
import {
  type ArchiveFile,
  type AuditRecord,
  type ChargeRequest,
  type ChargeResult,
  Patterns,
} from './contracts.js';
import { meshOptions, readMeshSettings, startService, trace } from './mesh.js';
import { describeError, superviseService } from './supervision.js';

/** An audit record as it must arrive; `ValidationPipe` checks it before the handler runs. */
class AuditRecordDto implements AuditRecord {
  @IsInt()
  @IsPositive()
  readonly orderId!: number;

  @IsIn(['created', 'charged', 'shipped'])
  readonly action!: AuditRecord['action'];

  @IsString()
  @IsNotEmpty()
  readonly actor!: string;
}

/**
 * Validation failures become an `RpcException`, so the event is rejected with the reasons and
 * the sender's `emit()` errors with `RemoteTabernaRejected` carrying them.
 */
const validRecord = new ValidationPipe({
  exceptionFactory: (errors) =>
    new RpcException({
      status: 'error',
      message: `invalid audit record: ${errors
        .flatMap((error) => Object.values(error.constraints ?? {}))
        .join('; ')}`,
    }),
});

/** Writes every refusal to the trace, then lets Nest answer the sender with the error as usual. */
@Catch(RpcException)
class RefusalTrace extends BaseRpcExceptionFilter<RpcException> {
  override catch(exception: RpcException, host: ArgumentsHost): Observable<unknown> {
    const ctx = host.switchToRpc().getContext<AureliaContext>();
    const error = exception.getError();
    const reason = typeof error === 'string' ? error : (error as { message?: string }).message;
    trace('audit', `refused ${ctx.getPattern()} from ${ctx.getPeer().identity}: ${reason}`);
    return super.catch(exception, host);
  }
}

@Controller()
class AuditController {
  private readonly trail: AuditRecord[] = [];

  /** An event: accepted when this returns, rejected when validation (or the handler) throws. */
  @UseFilters(RefusalTrace)
  @UsePipes(validRecord)
  @EventPattern<string>(Patterns.record)
  record(@Payload() record: AuditRecordDto, @Ctx() ctx: AureliaContext): void {
    this.trail.push(record);
    trace(
      'audit',
      `record #${this.trail.length}: order #${record.orderId} ${record.action} by ${record.actor} (from ${ctx.getPeer().identity})`,
    );
  }

  /** An event with a blob: the file's bytes stream in while the handler reads them. */
  @UseFilters(RefusalTrace)
  @EventPattern<string>(Patterns.archive)
  async archive(@Payload() file: ArchiveFile, @Ctx() ctx: AureliaContext): Promise<void> {
    const blob = ctx.getBlob();
    if (blob === undefined) throw new RpcException('audit.archive takes the file as a blob');
    const hash = createHash('sha256');
    let bytes = 0;
    for await (const chunk of blob as AsyncIterable<Buffer>) {
      hash.update(chunk);
      bytes += chunk.length;
    }
    if (bytes !== file.bytes) {
      throw new RpcException(`${file.name}: received ${bytes} bytes of ${file.bytes}`);
    }
    trace('audit', `archived ${file.name}: ${bytes} bytes, sha256 ${hash.digest('hex')}`);
  }
}

/** What audit itself calls, to show billing's guard refusing a caller it does not admit. */
@Injectable()
class AuditCalls {
  constructor(private readonly mesh: ClientAurelia) {}

  async tryToCharge(): Promise<void> {
    const request: ChargeRequest = { orderId: 99, customer: 'mallory', amountCents: 1 };
    try {
      await firstValueFrom(this.mesh.send<ChargeResult, ChargeRequest>(Patterns.charge, request));
    } catch (err) {
      // What Nest answers for a guard that said no; a timeout or transport error is a failure.
      if (describeError(err) !== 'Forbidden resource') throw err;
      trace('audit', `charge #${request.orderId} → billing: refused (${describeError(err)})`);
      return;
    }
    throw new Error('billing charged an order for audit: its guard should admit orders only');
  }
}

@Module({
  imports: [
    AureliaModule.forRootAsync({
      useFactory: () => meshOptions(readMeshSettings(), 'audit', { [Patterns.charge]: 'billing' }),
    }),
  ],
  controllers: [AuditController],
  providers: [AuditCalls],
})
class AuditModule {}

await superviseService(
  'audit',
  () => startService(AuditModule),
  (app) => ({ 'charge-as-audit': () => app.get(AuditCalls).tryToCharge() }),
);
