# %% validation_split
generator = torch.Generator().manual_seed(42)
n_total = len(all_train_labels)
n_val = n_total // 10
permutation = torch.randperm(n_total, generator=generator)
train_images = all_train_images[permutation[n_val:]]
train_labels = all_train_labels[permutation[n_val:]]
val_images = all_train_images[permutation[:n_val]]
val_labels = all_train_labels[permutation[:n_val]]
train_loader = TensorLoader(train_images, train_labels, batch_size=128, shuffle=True, seed=1)
val_loader = TensorLoader(val_images, val_labels, batch_size=512, shuffle=False)
print(f"train {len(train_labels):,} · validation {len(val_labels):,} · test {len(test_labels):,}")

# %% training_functions
def train_one_epoch(model, loader, optimizer, loss_fn, device):
    model.train()
    summed, seen = 0.0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        batch_loss = loss_fn(model(x), y)
        batch_loss.backward()
        optimizer.step()
        summed += batch_loss.item() * y.size(0)
        seen += y.size(0)
    return summed / seen


def evaluate(model, loader, loss_fn, device):
    model.eval()
    summed, hits, seen = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            summed += loss_fn(logits, y).item() * y.size(0)
            hits += (logits.argmax(1) == y).sum().item()
            seen += y.size(0)
    return summed / seen, hits / seen

# %% model_definition
class FashionModel(nn.Module):
    def __init__(self, widths=(512, 256, 128), dropout=0.25):
        super().__init__()
        self.config = {"widths": list(widths), "dropout": dropout}
        layers = [nn.Flatten()]
        previous = 28 * 28
        for width in widths:
            layers += [nn.Linear(previous, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(dropout)]
            previous = width
        layers.append(nn.Linear(previous, 10))
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x)


MODEL_CONFIG = {"widths": [512, 256, 128], "dropout": 0.25}

# %% pipeline
def train_model(model, optimizer, train_loader, val_loader, max_epochs, patience, checkpoint_path, device):
    loss_fn = nn.CrossEntropyLoss()
    history = {"train_loss": [], "val_loss": [], "val_accuracy": [], "best_epoch": None}
    best, stale = 0.0, 0
    for epoch in range(1, max_epochs + 1):
        history["train_loss"].append(train_one_epoch(model, train_loader, optimizer, loss_fn, device))
        loss, acc = evaluate(model, val_loader, loss_fn, device)
        history["val_loss"].append(loss)
        history["val_accuracy"].append(acc)
        print(f"epoch {epoch:2d}  val loss {loss:.4f}  val acc {acc:.2%}")
        if acc > best:
            best, stale = acc, 0
            history["best_epoch"] = epoch
            torch.save(
                dict(model_state_dict=model.state_dict(), optimizer_state_dict=optimizer.state_dict(),
                     epoch=epoch, val_accuracy=float(acc), model_config=model.config),
                checkpoint_path,
            )
            continue
        stale += 1
        if stale >= patience:
            break
    model.load_state_dict(torch.load(checkpoint_path, map_location=device, weights_only=True)["model_state_dict"])
    return history

# %% final_training
BEST_CHECKPOINT = CHECKPOINT_DIR / "fashion_best.pth"
TIME_BUDGET = 120  # seconds of training on a 2-core CPU (Colab's CPU runtime)
torch.manual_seed(0)
start = time.perf_counter()
model = FashionModel(**MODEL_CONFIG).to(device)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=5e-4)
history = train_model(model, optimizer, train_loader, val_loader, max_epochs=15, patience=4,
                      checkpoint_path=BEST_CHECKPOINT, device=device)
seconds = time.perf_counter() - start

# %% per_class
def per_class_accuracy(predictions, labels, num_classes=10):
    result = []
    for c in range(num_classes):
        mask = labels == c
        total = int(mask.sum())
        result.append(float("nan") if total == 0 else (predictions[mask] == c).sum().item() / total)
    return torch.tensor(result, dtype=torch.float32)
