// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {Membership, Roles, WrongOrg} from "./Membership.sol";
import {Activity} from "./Activity.sol";
import {CtiMarket} from "./CtiMarket.sol";

/// Use of a CTI token: a consumer puts one token in escrow (burned until the task closes) to request the data, with the
/// public key the delivery must be encrypted to. An authorized solver of the publisher
/// org accepts it and finishes it (result hash + URI) before the deadline; finishing
/// uses the token up for good. The consumer gets the token back when it cancels a pending
/// task, when an accepted task expires, or when the solver rejects the task. Once the
/// consumer's organization is no longer a member, its open tasks cannot be accepted or
/// finished, and anyone may cancel them: the escrowed token goes back to the consumer.
contract Tasks {
    enum State { None, Pending, Accepted, Finished, Cancelled, Expired, Rejected }

    /// Two storage slots: the first written once by `request`, the second by `request` and
    /// updated in place by every later step. What is only read off-chain (the consumer's key,
    /// the result hash and URI, a rejection's reason) is in the events below, not in storage.
    struct Task {
        address consumer;
        uint64 tokenId;
        uint32 consumerOrg;
        uint32 publisherOrg; // slot 2 from here
        State state;
        uint40 deadline; // set on accept
        address solver; // set on accept
    }

    uint256 public constant MAX_KEY_BYTES = 1024;

    Membership public immutable membership;
    CtiMarket public immutable market;
    Activity public immutable activity;
    uint64 public immutable timeout; // seconds an accepted task has to be finished

    uint256 public taskCount; // task ids are 1..taskCount
    mapping(uint256 => Task) private _tasks;

    event TaskChanged(uint256 indexed taskId, uint256 indexed tokenId, uint32 indexed publisherOrg, State state);
    /// The public key the delivery must be encrypted to, indexed as TaskChanged is, so that the
    /// publisher org's Solver reads both with one log filter.
    event Requested(uint256 indexed taskId, uint256 indexed tokenId, uint32 indexed publisherOrg, bytes encryptionKey);
    /// What the solver delivered: the keccak256 of the ciphertext and where to fetch it.
    event Finished(uint256 indexed taskId, bytes32 resultHash, string resultUri);
    event Rejected(uint256 indexed taskId, string reason);

    error NoSuchTask(uint256 taskId);
    error BadState(uint256 taskId, State state);
    error BadKey(string why);
    error NotAuthorizedSolver(address account, uint256 tokenId);
    error NotTaskSolver(address account, uint256 taskId);
    error NotTaskConsumer(address account, uint256 taskId);
    error DeadlinePassed(uint256 taskId, uint64 deadline);
    error DeadlineNotPassed(uint256 taskId, uint64 deadline);
    error EmptyResult(uint256 taskId);
    error ConsumerNotMember(uint256 taskId, uint32 consumerOrg);
    error BadTimeout(uint64 timeout);

    constructor(Membership membership_, CtiMarket market_, Activity activity_, uint64 timeout_) {
        membership = membership_;
        market = market_;
        activity = activity_;
        if (timeout_ == 0 || timeout_ > type(uint32).max) revert BadTimeout(timeout_); // deadlines fit uint40
        timeout = timeout_;
    }

    function task(uint256 taskId) external view returns (Task memory) {
        return _get(taskId);
    }

    /// The few fields the Feedback contract needs.
    function outcome(uint256 taskId)
        external
        view
        returns (uint256 tokenId, address consumer, uint32 consumerOrg, uint32 publisherOrg, State state)
    {
        Task storage t = _get(taskId);
        return (t.tokenId, t.consumer, t.consumerOrg, t.publisherOrg, t.state);
    }

    // ---- consumer ----------------------------------------------------------------------

    function request(uint256 tokenId, bytes calldata encryptionKey) external returns (uint256 taskId) {
        uint32 org = membership.requireRole(msg.sender, Roles.CONSUMER);
        _checkKey(encryptionKey);
        // one token of the consumer's burned into escrow (NoSuchListing, NoToken); minted back if the task closes unused
        taskId = _open(org, tokenId, market.escrow(msg.sender, tokenId), encryptionKey);
    }

    /// `buy` of one token and `request` in one transaction (pay the listing's price; change is
    /// refunded): the token goes from the market's inventory straight into the task's escrow, and
    /// the same facts are recorded (Sold, Bought, Requested, the key). Minted back to the
    /// consumer, like any escrowed token, if the task closes unused.
    function buyAndRequest(uint256 tokenId, bytes calldata encryptionKey) external payable returns (uint256 taskId) {
        uint32 org = membership.requireRole(msg.sender, Roles.CONSUMER);
        _checkKey(encryptionKey);
        taskId = _open(org, tokenId, market.sellIntoEscrow{value: msg.value}(msg.sender, org, tokenId), encryptionKey);
    }

    /// The consumer cancels its pending task; anyone cancels an open (pending or accepted) task
    /// whose consumer organization was removed. The token goes back to the consumer account.
    function cancel(uint256 taskId) external {
        Task storage t = _get(taskId);
        if (membership.isActive(t.consumerOrg)) {
            t = _asConsumer(taskId, State.Pending);
        } else if (t.state != State.Pending && t.state != State.Accepted) {
            revert BadState(taskId, t.state);
        }
        _close(taskId, t, State.Cancelled, Activity.Kind.Cancelled, t.consumerOrg);
    }

    function expire(uint256 taskId) external {
        Task storage t = _asConsumer(taskId, State.Accepted);
        if (block.timestamp <= t.deadline) revert DeadlineNotPassed(taskId, t.deadline);
        _close(taskId, t, State.Expired, Activity.Kind.Expired, t.consumerOrg);
    }

    // ---- solver ------------------------------------------------------------------------

    function accept(uint256 taskId) external {
        Task storage t = _asSolver(taskId);
        if (t.state != State.Pending) revert BadState(taskId, t.state);
        if (!membership.isActive(t.consumerOrg)) revert ConsumerNotMember(taskId, t.consumerOrg);
        t.state = State.Accepted;
        t.solver = msg.sender;
        t.deadline = uint40(block.timestamp + timeout);
        emit TaskChanged(taskId, t.tokenId, t.publisherOrg, State.Accepted);
        activity.record(Activity.Kind.Accepted, t.publisherOrg, t.tokenId, taskId, msg.sender, 1);
    }

    function finish(uint256 taskId, bytes32 resultHash, string calldata resultUri) external {
        Task storage t = _asSolver(taskId);
        if (t.state != State.Accepted) revert BadState(taskId, t.state);
        if (t.solver != msg.sender) revert NotTaskSolver(msg.sender, taskId);
        if (block.timestamp > t.deadline) revert DeadlinePassed(taskId, t.deadline);
        if (resultHash == bytes32(0)) revert EmptyResult(taskId);
        if (!membership.isActive(t.consumerOrg)) revert ConsumerNotMember(taskId, t.consumerOrg);
        t.state = State.Finished;
        emit TaskChanged(taskId, t.tokenId, t.publisherOrg, State.Finished);
        emit Finished(taskId, resultHash, resultUri);
        activity.record2(
            Activity.Kind.Solved, t.publisherOrg, 1, Activity.Kind.Consumed, t.consumerOrg, 1, t.tokenId, taskId, msg.sender
        );
    }

    /// Accept and finish in one transaction, for a solver that has the delivery ready when it first
    /// sees the pending task: the same facts as `accept` then `finish` (this solver on the task,
    /// Accepted, Solved and Consumed counted, the Finished event), no deadline to keep.
    function deliver(uint256 taskId, bytes32 resultHash, string calldata resultUri) external {
        Task storage t = _asSolver(taskId);
        if (t.state != State.Pending) revert BadState(taskId, t.state);
        if (resultHash == bytes32(0)) revert EmptyResult(taskId);
        if (!membership.isActive(t.consumerOrg)) revert ConsumerNotMember(taskId, t.consumerOrg);
        t.state = State.Finished;
        t.solver = msg.sender;
        emit TaskChanged(taskId, t.tokenId, t.publisherOrg, State.Finished);
        emit Finished(taskId, resultHash, resultUri);
        activity.record3(
            Activity.Kind.Accepted, t.publisherOrg, Activity.Kind.Solved, t.publisherOrg, Activity.Kind.Consumed,
            t.consumerOrg, t.tokenId, taskId, msg.sender
        );
    }

    /// Reject a pending task, or abandon one this solver accepted (e.g. the MISP data is
    /// missing); the consumer gets the token back.
    function reject(uint256 taskId, string calldata reason) external {
        Task storage t = _asSolver(taskId);
        if (t.state == State.Accepted) {
            if (t.solver != msg.sender) revert NotTaskSolver(msg.sender, taskId);
        } else if (t.state != State.Pending) {
            revert BadState(taskId, t.state);
        }
        emit Rejected(taskId, reason);
        _close(taskId, t, State.Rejected, Activity.Kind.Rejected, t.publisherOrg);
    }

    // ---- internals ---------------------------------------------------------------------

    function _checkKey(bytes calldata encryptionKey) private pure {
        if (encryptionKey.length == 0 || encryptionKey.length > MAX_KEY_BYTES) {
            revert BadKey("encryption public key must be 1..1024 bytes");
        }
    }

    function _open(uint32 org, uint256 tokenId, uint32 publisherOrg, bytes calldata encryptionKey)
        private
        returns (uint256 taskId)
    {
        taskId = ++taskCount;
        // tokenId fits: the market has at most listingCount (far below 2^64) listings.
        _tasks[taskId] = Task(msg.sender, uint64(tokenId), org, publisherOrg, State.Pending, 0, address(0));
        emit TaskChanged(taskId, tokenId, publisherOrg, State.Pending);
        emit Requested(taskId, tokenId, publisherOrg, encryptionKey);
        activity.record(Activity.Kind.Requested, org, tokenId, taskId, msg.sender, 1);
    }

    function _get(uint256 taskId) private view returns (Task storage t) {
        if (taskId == 0 || taskId > taskCount) revert NoSuchTask(taskId);
        return _tasks[taskId];
    }

    function _asConsumer(uint256 taskId, State required) private view returns (Task storage t) {
        membership.requireRole(msg.sender, Roles.CONSUMER);
        t = _get(taskId);
        if (t.consumer != msg.sender) revert NotTaskConsumer(msg.sender, taskId);
        if (t.state != required) revert BadState(taskId, t.state);
    }

    function _asSolver(uint256 taskId) private view returns (Task storage t) {
        uint32 org = membership.requireRole(msg.sender, Roles.SOLVER);
        t = _get(taskId);
        if (org != t.publisherOrg) revert WrongOrg(msg.sender, org, t.publisherOrg);
        if (!market.isSolver(t.tokenId, msg.sender)) revert NotAuthorizedSolver(msg.sender, t.tokenId);
    }

    function _close(uint256 taskId, Task storage t, State state, Activity.Kind kind, uint32 org) private {
        t.state = state;
        market.release(t.consumer, t.tokenId);
        emit TaskChanged(taskId, t.tokenId, t.publisherOrg, state);
        activity.record(kind, org, t.tokenId, taskId, msg.sender, 1);
    }
}
