// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {ERC1155} from "@openzeppelin/contracts/token/ERC1155/ERC1155.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {Membership, MissingRole, NotMember, Roles, WrongOrg} from "./Membership.sol";
import {Activity} from "./Activity.sol";

/// Catalog, tokens and sales in one ERC-1155 contract: one token id per CTI listing.
/// A publisher org lists a CTI (MISP event UUID, title, content hash, price, supply and the
/// solvers it authorizes); the minted tokens stay in this contract's inventory until sold.
/// Buyers pay the price (change refunded); proceeds accrue to the publisher org and are
/// pulled by one of its publishers. The Tasks contract burns a token into escrow and mints it back.
contract CtiMarket is ERC1155, ReentrancyGuard {
    struct Listing {
        uint32 org;
        bool withdrawn;
        uint128 price; // wei per token
        bytes32 contentHash;
        string mispUuid;
        string title;
    }

    uint256 public constant MAX_SUPPLY = type(uint64).max;

    Membership public immutable membership;
    Activity public immutable activity;
    address public immutable tasks;

    uint256 public listingCount; // token ids are 1..listingCount
    mapping(uint256 => Listing) private _listings;
    mapping(uint256 => mapping(address => bool)) private _solvers;
    mapping(uint256 => uint256) public totalSupply; // in balances: minted, minus used up, withdrawn or in escrow
    mapping(uint32 => uint256) public proceeds; // wei owed to each publisher org

    event Listed(uint256 indexed tokenId, uint32 indexed org, string mispUuid, bytes32 contentHash, uint128 price);
    event ListingChanged(uint256 indexed tokenId, string title, uint128 price, bool withdrawn);
    event SolverSet(uint256 indexed tokenId, address indexed solver, bool allowed);
    event ProceedsWithdrawn(uint32 indexed org, address indexed to, uint256 amount);

    error NoSuchListing(uint256 tokenId);
    error ListingWithdrawn(uint256 tokenId);
    error BadListing(string why);
    error NotASolverOfOrg(address solver, uint32 org);
    error OwnListing(uint256 tokenId, uint32 org);
    error PublisherRemoved(uint256 tokenId, uint32 org);
    error SoldOut(uint256 tokenId, uint256 requested, uint256 available);
    error Underpaid(uint256 required, uint256 sent);
    error NothingToWithdraw(uint32 org);
    error PaymentFailed(address to, uint256 amount);
    error OnlyTasks(address caller);
    error NoToken(address account, uint256 tokenId);

    constructor(Membership membership_, Activity activity_, address tasks_) ERC1155("") {
        membership = membership_;
        activity = activity_;
        tasks = tasks_;
    }

    // ---- views -------------------------------------------------------------------------

    function listing(uint256 tokenId) public view returns (Listing memory) {
        _exists(tokenId);
        return _listings[tokenId];
    }

    /// The publisher org of a listing (reverts NoSuchListing for unknown ids).
    function listingOrg(uint256 tokenId) external view returns (uint32) {
        _exists(tokenId);
        return _listings[tokenId].org;
    }

    function isSolver(uint256 tokenId, address account) external view returns (bool) {
        return _solvers[tokenId][account];
    }

    function inventory(uint256 tokenId) public view returns (uint256) {
        return balanceOf(address(this), tokenId);
    }

    // ---- publisher ---------------------------------------------------------------------

    function publish(
        string calldata mispUuid,
        string calldata title,
        bytes32 contentHash,
        uint128 price,
        uint256 supply,
        address[] calldata solvers
    ) external returns (uint256 tokenId) {
        uint32 org = membership.requireRole(msg.sender, Roles.PUBLISHER);
        if (bytes(mispUuid).length == 0) revert BadListing("MISP event UUID is empty");
        if (contentHash == bytes32(0)) revert BadListing("content hash is zero");
        if (supply == 0 || supply > MAX_SUPPLY) revert BadListing("supply must be 1..2^64-1");
        tokenId = ++listingCount;
        _listings[tokenId] = Listing(org, false, price, contentHash, mispUuid, title);
        emit Listed(tokenId, org, mispUuid, contentHash, price);
        emit ListingChanged(tokenId, title, price, false);
        for (uint256 i = 0; i < solvers.length; i++) {
            _setSolver(tokenId, org, solvers[i], true);
        }
        _mintStock(tokenId, supply);
        activity.record2(
            Activity.Kind.Published, org, 1, Activity.Kind.Minted, org, uint64(supply), tokenId, 0, msg.sender
        );
    }

    function mint(uint256 tokenId, uint256 amount) external {
        (uint32 org,) = _publisherOf(tokenId);
        if (amount == 0 || totalSupply[tokenId] + amount > MAX_SUPPLY) revert BadListing("supply must stay 1..2^64-1");
        _mintStock(tokenId, amount);
        activity.record(Activity.Kind.Minted, org, tokenId, 0, msg.sender, uint64(amount));
    }

    function modify(uint256 tokenId, string calldata title, uint128 price) external {
        (, Listing storage l) = _publisherOf(tokenId);
        l.title = title;
        l.price = price;
        emit ListingChanged(tokenId, title, price, false);
    }

    function setSolver(uint256 tokenId, address solver, bool allowed) external {
        (uint32 org,) = _publisherOf(tokenId);
        _setSolver(tokenId, org, solver, allowed);
    }

    /// Stop selling and burn the unsold inventory. Tokens already sold stay usable.
    function withdrawListing(uint256 tokenId) external {
        (, Listing storage l) = _publisherOf(tokenId);
        l.withdrawn = true;
        uint256 stock = inventory(tokenId);
        if (stock > 0) {
            _update(address(this), address(0), _one(tokenId), _one(stock));
            totalSupply[tokenId] -= stock;
        }
        emit ListingChanged(tokenId, l.title, l.price, true);
    }

    /// Pull payment: a publisher of the org receives all the org's proceeds. An org removed
    /// from the consortium can still collect what it earned while a member.
    function withdrawProceeds() external nonReentrant {
        (uint32 org, uint8 roles,) = membership.accountOf(msg.sender);
        if (org == 0) revert NotMember(msg.sender);
        if (roles & Roles.PUBLISHER == 0) revert MissingRole(msg.sender, Roles.PUBLISHER);
        uint256 amount = proceeds[org];
        if (amount == 0) revert NothingToWithdraw(org);
        proceeds[org] = 0;
        emit ProceedsWithdrawn(org, msg.sender, amount);
        _pay(msg.sender, amount);
    }

    // ---- consumer ----------------------------------------------------------------------

    /// Buy `amount` tokens at the listed price. Underpayment reverts with Underpaid;
    /// any excess is refunded in the same call.
    function buy(uint256 tokenId, uint256 amount) external payable nonReentrant {
        uint32 org = membership.requireRole(msg.sender, Roles.CONSUMER);
        (uint32 publisherOrg, uint256 cost) = _charge(tokenId, org, amount);
        _safeTransferFrom(address(this), msg.sender, tokenId, amount, "");
        activity.record2(
            Activity.Kind.Sold, publisherOrg, uint64(amount), Activity.Kind.Bought, org, uint64(amount), tokenId, 0, msg.sender
        );
        if (msg.value > cost) _pay(msg.sender, msg.value - cost);
    }

    // ---- escrow, for the Tasks contract only -------------------------------------------

    /// One token bought by `buyer` (a consumer of `buyerOrg`, checked by the caller) straight into
    /// escrow, for `Tasks.buyAndRequest`: paid, counted (Sold, Bought) and refunded like `buy`, the
    /// token burned from the inventory without passing through the buyer's balance.
    function sellIntoEscrow(address buyer, uint32 buyerOrg, uint256 tokenId)
        external
        payable
        nonReentrant
        returns (uint32 publisherOrg)
    {
        _onlyTasks();
        uint256 cost;
        (publisherOrg, cost) = _charge(tokenId, buyerOrg, 1);
        _update(address(this), address(0), _one(tokenId), _one(1));
        totalSupply[tokenId] -= 1;
        activity.record2(Activity.Kind.Sold, publisherOrg, 1, Activity.Kind.Bought, buyerOrg, 1, tokenId, 0, buyer);
        if (msg.value > cost) _pay(buyer, msg.value - cost);
    }

    /// Burn one of `from`'s tokens while its task is open (an escrowed token is in no balance and
    /// not in totalSupply); the listing's publisher org, for the task.
    function escrow(address from, uint256 tokenId) external returns (uint32 publisherOrg) {
        _onlyTasks();
        publisherOrg = _exists(tokenId).org;
        if (balanceOf(from, tokenId) == 0) revert NoToken(from, tokenId);
        _update(from, address(0), _one(tokenId), _one(1));
        totalSupply[tokenId] -= 1;
    }

    /// Mint the escrowed token back to the consumer of a task closed unused.
    function release(address to, uint256 tokenId) external {
        _onlyTasks();
        _update(address(0), to, _one(tokenId), _one(1));
        totalSupply[tokenId] += 1;
    }

    // ---- internals ---------------------------------------------------------------------

    function _exists(uint256 tokenId) private view returns (Listing storage l) {
        if (tokenId == 0 || tokenId > listingCount) revert NoSuchListing(tokenId);
        return _listings[tokenId];
    }

    /// The checks of a sale of `amount` tokens to `buyerOrg` paying msg.value; the price goes to the
    /// publisher org's proceeds.
    function _charge(uint256 tokenId, uint32 buyerOrg, uint256 amount) private returns (uint32 publisherOrg, uint256 cost) {
        Listing storage l = _exists(tokenId);
        publisherOrg = l.org;
        if (l.withdrawn) revert ListingWithdrawn(tokenId);
        if (publisherOrg == buyerOrg) revert OwnListing(tokenId, buyerOrg);
        if (!membership.isActive(publisherOrg)) revert PublisherRemoved(tokenId, publisherOrg);
        uint256 stock = inventory(tokenId);
        if (amount == 0 || amount > stock) revert SoldOut(tokenId, amount, stock);
        cost = uint256(l.price) * amount; // < 2^192: price < 2^128, amount < 2^64
        if (msg.value < cost) revert Underpaid(cost, msg.value);
        proceeds[publisherOrg] += cost;
    }

    /// The caller must be a publisher of the listing's org and the listing still open.
    function _publisherOf(uint256 tokenId) private view returns (uint32 org, Listing storage l) {
        org = membership.requireRole(msg.sender, Roles.PUBLISHER);
        l = _exists(tokenId);
        if (l.org != org) revert WrongOrg(msg.sender, org, l.org);
        if (l.withdrawn) revert ListingWithdrawn(tokenId);
    }

    function _setSolver(uint256 tokenId, uint32 org, address solver, bool allowed) private {
        if (allowed) {
            (uint32 solverOrg, uint8 roles) = membership.orgOf(solver);
            if (solverOrg != org || roles & Roles.SOLVER == 0) revert NotASolverOfOrg(solver, org);
        }
        _solvers[tokenId][solver] = allowed;
        emit SolverSet(tokenId, solver, allowed);
    }

    function _mintStock(uint256 tokenId, uint256 amount) private {
        // Straight to inventory: this contract needs no ERC-1155 receiver hook for its own stock.
        _update(address(0), address(this), _one(tokenId), _one(amount));
        totalSupply[tokenId] += amount;
    }

    function _pay(address to, uint256 amount) private {
        (bool ok,) = payable(to).call{value: amount}("");
        if (!ok) revert PaymentFailed(to, amount);
    }

    function _onlyTasks() private view {
        if (msg.sender != tasks) revert OnlyTasks(msg.sender);
    }

    function _one(uint256 x) private pure returns (uint256[] memory a) {
        a = new uint256[](1);
        a[0] = x;
    }
}
