# %% device_helpers
def pick_device():
    if torch.cuda.is_available():
        name = "cuda"
    elif torch.backends.mps.is_available():
        name = "mps"
    else:
        name = "cpu"
    return torch.device(name)


def move_batch(images, labels, device):
    images = images.to(device)
    labels = labels.to(device)
    return images, labels


# %% device_aware_training
def train_one_epoch(model, loader, optimizer, loss_fn, device):
    model.train()
    running, seen = 0.0, 0
    for batch in loader:
        x, y = move_batch(*batch, device)
        optimizer.zero_grad(set_to_none=True)
        out = model(x)
        loss = loss_fn(out, y)
        loss.backward()
        optimizer.step()
        running += loss.item() * y.shape[0]
        seen += y.shape[0]
    return running / max(seen, 1)


def fit(model, train_loader, loss_fn, device, num_epochs, lr=1e-3):
    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = [train_one_epoch(model, train_loader, opt, loss_fn, device) for _ in range(num_epochs)]
    return losses


# %% mixed_precision
def amp_dtype(device):
    return torch.float16 if torch.device(device).type == "cuda" else torch.bfloat16


def make_scaler(device):
    on_gpu = torch.device(device).type == "cuda"
    return torch.amp.GradScaler("cuda", enabled=on_gpu)


def amp_train_step(model, images, labels, optimizer, loss_fn, scaler, device):
    images, labels = move_batch(images, labels, device)
    optimizer.zero_grad()
    with torch.autocast(device_type=device.type, dtype=amp_dtype(device)):
        logits = model(images)
        loss = loss_fn(logits, labels)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.item()


# %% checkpoint_across_devices
def save_checkpoint(path, model, optimizer, scaler, epoch):
    payload = {
        "epoch": epoch,
        "model_state_dict": model.state_dict(),
        "optimizer_state_dict": optimizer.state_dict(),
        "scaler_state_dict": scaler.state_dict(),
    }
    torch.save(payload, path)


def load_checkpoint(path, model, optimizer, scaler, device):
    payload = torch.load(path, map_location=device, weights_only=True)
    model.load_state_dict(payload["model_state_dict"])
    optimizer.load_state_dict(payload["optimizer_state_dict"])
    if len(payload["scaler_state_dict"]) > 0:
        scaler.load_state_dict(payload["scaler_state_dict"])
    return payload["epoch"]
