"""A tiny search config for the engine tests (SASE, arXiv 2411.08333):
scikit-learn's digits at 8 x 8, a depth-8 CIFAR ResNet with 8 channels, two
batches per epoch."""
import copy


def tiny_search_cfg(work_dir, order=1, max_epochs=2, val=True):
    def part(split, shuffle=True):
        return dict(batch_size=8, num_workers=0, num_batch_per_epoch=2,
                    sampler=dict(type='DefaultSampler', shuffle=shuffle),
                    collate_fn=dict(type='default_collate'),
                    dataset=dict(type='sase_mm.DigitsSearch', split=split,
                                 size=8))

    cfg = dict(
        default_scope='sase_mm',
        work_dir=str(work_dir),
        experiment_name='tiny_search',
        model=dict(type='sase_mm.DARTSSearch', order=order,
                   supernet=dict(type='sase_mm.CifarResNet', depth=8,
                                 num_classes=10, base_channels=8,
                                 input_size=8,
                                 attn_cfg=dict(type='sase_mm.SASESearch'))),
        train_dataloader=part('train'),
        train_cfg=dict(type='sase_mm.DARTSLoop', max_epochs=max_epochs,
                       search_dataloader=part('search'),
                       val_interval=max_epochs),
        optim_wrapper=dict(
            constructor='sase_mm.DARTSOptimWrapperConstructor',
            weights=dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9,
                                        weight_decay=5e-4),
                         clip_grad=dict(max_norm=5)),
            alphas=dict(optimizer=dict(type='Adam', lr=0.01,
                                       betas=(0.5, 0.999),
                                       weight_decay=1e-3))),
        param_scheduler=dict(
            weights=[dict(type='CosineAnnealingLR', T_max=2, eta_min=1e-4,
                          by_epoch=True, begin=0, end=2)],
            alphas=[]),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=1),
            logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[dict(type='sase_mm.GenotypeHook')],
        visualizer=dict(type='Visualizer',
                        vis_backends=[dict(type='LocalVisBackend')]),
        randomness=dict(seed=0),
        env_cfg=dict(dist_cfg=dict(backend='gloo')),
        log_level='INFO',
    )
    if val:
        cfg.update(val_dataloader=part('val', shuffle=False),
                   val_evaluator=dict(type='sase_mm.TopKAccuracy'),
                   val_cfg=dict())
    return copy.deepcopy(cfg)
