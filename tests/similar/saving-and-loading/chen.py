# %% save_and_load_model
def save_model(model, path):
    torch.save(obj=model.state_dict(), f=path)


def load_model(path, device="cpu"):
    device = torch.device(device)
    state_dict = torch.load(path, map_location=device, weights_only=True)
    m = MNISTModel()
    missing_unexpected = m.load_state_dict(state_dict, strict=True)
    m = m.to(device)
    m.eval()
    return m


def predictions_match(model, loaded_model, images):
    was_training = model.training, loaded_model.training
    model.eval(), loaded_model.eval()
    try:
        with torch.no_grad():
            a = model(images)
            b = loaded_model(images.to(next(loaded_model.parameters()).device))
        same = torch.allclose(a, b.to(a.device))
    finally:
        model.train(was_training[0])
        loaded_model.train(was_training[1])
    return bool(same)


# %% checkpoint_functions
def save_checkpoint(path, model, optimizer, epoch, loss):
    try:
        loss_value = loss.item()
    except AttributeError:
        loss_value = loss
    checkpoint = {}
    checkpoint["epoch"] = int(epoch)
    checkpoint["loss"] = float(loss_value)
    checkpoint["model_state_dict"] = model.state_dict()
    checkpoint["optimizer_state_dict"] = optimizer.state_dict()
    torch.save(checkpoint, path)


def load_checkpoint(path, model, optimizer=None, device="cpu"):
    data = torch.load(path, weights_only=True, map_location=device)
    model.load_state_dict(data["model_state_dict"])
    if optimizer is None:
        return data["epoch"], data["loss"]
    optimizer.load_state_dict(data["optimizer_state_dict"])
    return data["epoch"], data["loss"]


# %% train_with_checkpoints
def train_with_checkpoints(model, optimizer, train_loader, val_loader, num_epochs, checkpoint_dir,
                           save_every=5, device="cpu"):
    checkpoint_dir = pathlib.Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    ce = nn.CrossEntropyLoss()
    tr_hist = []
    va_hist = []
    best = (float("inf"), None)
    for ep in range(num_epochs):
        n = ep + 1
        tr_hist.append(train_one_epoch(model, train_loader, optimizer, ce, device))
        va, _acc = evaluate(model, val_loader, ce, device)
        va_hist.append(va)
        targets = []
        if n % save_every == 0:
            targets.append(checkpoint_dir / f"checkpoint_epoch_{n}.pth")
        if va < best[0]:
            best = (va, n)
            targets.append(checkpoint_dir / "best.pth")
        for target in targets:
            save_checkpoint(target, model, optimizer, n, va)
    return dict(train_loss=tr_hist, val_loss=va_hist, best_epoch=best[1])


# %% resume_from_checkpoint
def resume_from_checkpoint(path, lr=1e-3, device="cpu"):
    fresh = MNISTModel()
    fresh.to(device)
    fresh_opt = torch.optim.Adam(params=fresh.parameters(), lr=lr)
    last_epoch, last_loss = load_checkpoint(path, fresh, fresh_opt, device=device)
    print(f"resuming after epoch {last_epoch} (loss {last_loss:.4f})")
    fresh.train()
    return fresh, fresh_opt, last_epoch


# %% early_stopping
def train_with_early_stopping(model, optimizer, train_loader, val_loader, max_epochs, patience,
                              checkpoint_path, device="cpu"):
    ce = nn.CrossEntropyLoss()
    tr_hist, va_hist = [], []
    best_loss, best_at, bad_epochs = float("inf"), None, 0
    ep = 0
    while ep < max_epochs and bad_epochs < patience:
        ep += 1
        tr_hist.append(train_one_epoch(model, train_loader, optimizer, ce, device))
        va, _acc = evaluate(model, val_loader, ce, device)
        va_hist.append(va)
        improved = va < best_loss
        if improved:
            best_loss, best_at = va, ep
            save_checkpoint(checkpoint_path, model, optimizer, ep, va)
        bad_epochs = 0 if improved else bad_epochs + 1
    if best_at is not None:
        load_checkpoint(checkpoint_path, model, device=device)
    return dict(train_loss=tr_hist, val_loss=va_hist, best_epoch=best_at)
