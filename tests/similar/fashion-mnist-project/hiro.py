# %% validation_split
from torch.utils.data import DataLoader, TensorDataset

VAL_FRACTION = 0.15
rng = torch.Generator().manual_seed(2024)
order = torch.randperm(all_train_images.shape[0], generator=rng)
cut = int(VAL_FRACTION * len(order))
val_idx, train_idx = order[:cut], order[cut:]
train_images, train_labels = all_train_images[train_idx], all_train_labels[train_idx]
val_images, val_labels = all_train_images[val_idx], all_train_labels[val_idx]
train_loader = DataLoader(TensorDataset(train_images, train_labels), batch_size=200, shuffle=True,
                          generator=torch.Generator().manual_seed(7))
val_loader = DataLoader(TensorDataset(val_images, val_labels), batch_size=1000)
print(f"train {len(train_labels):,} · validation {len(val_labels):,} · test {len(test_labels):,}")

# %% training_functions
def _batches(loader, device):
    for images, labels in loader:
        yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)


def train_one_epoch(model, loader, optimizer, loss_fn, device):
    model.train()
    weighted = []
    for images, labels in _batches(loader, device):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()
        weighted.append((loss.item(), len(labels)))
    return sum(l * n for l, n in weighted) / sum(n for _, n in weighted)


@torch.no_grad()
def evaluate(model, loader, loss_fn, device):
    model.eval()
    losses, correct, total = [], 0, 0
    for images, labels in _batches(loader, device):
        scores = model(images)
        losses.append(loss_fn(scores, labels).item() * len(labels))
        correct += int((scores.argmax(dim=-1) == labels).sum())
        total += len(labels)
    return sum(losses) / total, correct / total

# %% model_definition
HIDDEN = 640


class FashionModel(nn.Module):
    def __init__(self, hidden=HIDDEN, p_drop=0.35, depth=2):
        super().__init__()
        self.config = dict(hidden=hidden, p_drop=p_drop, depth=depth)
        self.inp = nn.Linear(784, hidden)
        self.blocks = nn.ModuleList(
            [nn.Sequential(nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.GELU(), nn.Dropout(p_drop)) for _ in range(depth)]
        )
        self.out = nn.Linear(hidden, 10)

    def forward(self, images):
        h = torch.relu(self.inp(images.view(images.size(0), -1)))
        for block in self.blocks:
            h = block(h)
        return self.out(h)


MODEL_CONFIG = {"hidden": HIDDEN, "p_drop": 0.35, "depth": 2}

# %% pipeline
def train_model(model, optimizer, train_loader, val_loader, max_epochs, patience, checkpoint_path, device):
    criterion = nn.CrossEntropyLoss()
    hist = {key: [] for key in ("train_loss", "val_loss", "val_accuracy")}
    hist["best_epoch"] = None
    top = -math.inf
    epoch = 0
    while epoch < max_epochs:
        epoch += 1
        hist["train_loss"].append(train_one_epoch(model, train_loader, optimizer, criterion, device))
        v_loss, v_acc = evaluate(model, val_loader, criterion, device)
        hist["val_loss"].append(v_loss)
        hist["val_accuracy"].append(v_acc)
        if v_acc > top:
            top = v_acc
            hist["best_epoch"] = epoch
            snapshot = {
                "epoch": epoch,
                "val_accuracy": float(v_acc),
                "model_config": dict(model.config),
                "model_state_dict": model.state_dict(),
                "optimizer_state_dict": optimizer.state_dict(),
            }
            torch.save(snapshot, checkpoint_path)
        elif epoch - hist["best_epoch"] >= patience:
            print("early stop at epoch", epoch)
            break
    restored = torch.load(checkpoint_path, map_location=device, weights_only=True)
    model.load_state_dict(restored["model_state_dict"])
    return hist

# %% final_training
BEST_CHECKPOINT = CHECKPOINT_DIR / "fashion_best.pth"
TIME_BUDGET = 120  # seconds of training on a 2-core CPU (Colab's CPU runtime)
torch.manual_seed(0)
start = time.perf_counter()
model = FashionModel(**MODEL_CONFIG).to(device)
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.02)
history = train_model(model, optimizer, train_loader, val_loader, 20, 3, BEST_CHECKPOINT, device)
seconds = time.perf_counter() - start

# %% per_class
def per_class_accuracy(predictions, labels, num_classes=10):
    hits = torch.zeros(num_classes)
    counts = torch.zeros(num_classes)
    counts.index_add_(0, labels, torch.ones_like(labels, dtype=torch.float))
    hits.index_add_(0, labels, (predictions == labels).float())
    return torch.where(counts > 0, hits / counts.clamp(min=1), torch.tensor(float("nan")))
